"""`hallmark eval`: measure screening on labelled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from hallmark.cli.common import console, fail, load_settings

eval_app = typer.Typer(help="Measure screening on labelled data.", no_args_is_help=True)


@eval_app.command("prompts")
def eval_prompts(
    dataset: Annotated[
        list[Path],
        typer.Option(
            "--dataset",
            help="Labelled prompts (CSV prompt,label[,category]; "
            "AILuminate; PartiPrompts). Repeat for several.",
        ),
    ],
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N prompts of each file.")] = None,
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML file (default: the configured one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    include_seen: Annotated[
        bool, typer.Option(help="Keep prompts the prompt classifier was trained or calibrated on.")
    ] = False,
    batch: Annotated[
        int,
        typer.Option(min=1, max=4096, help="Prompts scored together; 1 measures each prompt's latency."),
    ] = 64,
) -> None:
    """Run the policy's prompt stage on labelled prompts: precision, recall, false-block rate,
    AUPRC, prompts per second and time per prompt per file, and the block rate per category.
    Prompts the classifier was fitted on are left out, so the figures are held-out figures."""
    from dataclasses import asdict

    from hallmark.compose import build_prompt_classifiers, configure_torch
    from moderation import PromptModel
    from moderation.evaluate import DatasetError, load_prompts, metrics, score_prompts
    from policy import Policy, PolicyError

    settings = load_settings(policy=policy)
    try:
        sets = {path.name: load_prompts(path, limit) for path in dataset}
        loaded = Policy.load(settings.policy)
    except (DatasetError, PolicyError) as exc:
        raise fail(str(exc)) from exc
    configure_torch(settings)
    try:
        classifiers = build_prompt_classifiers(settings, loaded)
    except (ValueError, RuntimeError) as exc:  # weights that do not fit the policy, an unloadable model
        raise fail(str(exc)) from exc
    model = next((c for c in classifiers if isinstance(c, PromptModel)), None)
    if model is not None and not include_seen:
        for name, prompts in sets.items():
            kept = [p for p in prompts if not model.weights.has_seen(p.text)]
            if len(kept) < len(prompts):
                console.print(
                    f"{name}: left out {len(prompts) - len(kept)} prompts the prompt classifier was "
                    "fitted on (--include-seen keeps them)"
                )
            sets[name] = kept

    results = {}
    for name, prompts in sets.items():
        with Progress(
            TextColumn(f"{name:<28}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
        ) as bar:
            task = bar.add_task(name, total=len(prompts))
            scored = score_prompts(
                classifiers, prompts, batch, lambda done, total, t=task: bar.update(t, completed=done)
            )
        if not prompts:
            raise fail(f"{name}: no prompts left to evaluate")
        results[name] = metrics(scored)
    if as_json:
        print(
            json.dumps(
                {"policy": loaded.label, "datasets": {k: asdict(v) for k, v in results.items()}}, indent=2
            )
        )
        return
    table = Table(title=f"Prompt screening under {loaded.label}", title_justify="left")
    for column in (
        "dataset",
        "n",
        "unsafe",
        "blocked",
        "precision",
        "recall",
        "false blocks",
        "AUPRC",
        "prompts/s",
        "p50 ms",
        "p95 ms",
    ):
        table.add_column(column, justify="left" if column == "dataset" else "right")

    def pct(value):
        return "-" if value is None else f"{value:.1%}"

    for name, m in results.items():
        table.add_row(
            name,
            str(m.n),
            str(m.unsafe),
            str(m.blocked),
            pct(m.precision),
            pct(m.recall),
            pct(m.false_block_rate),
            "-" if m.auprc is None else f"{m.auprc:.3f}",
            f"{m.prompts_per_s:.0f}",
            f"{m.p50_ms:.1f}",
            f"{m.p95_ms:.1f}",
        )
    Console().print(table)
    for name, m in results.items():
        if m.by_category:
            rates = ", ".join(f"{c} {r:.0%}" for c, r in m.by_category.items())
            Console().print(f"{name}: blocked per category: {rates}", highlight=False)
