"""`hallmark train`: train the screening models that ship with Hallmark."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hallmark.cli.common import console, fail, load_settings

train_app = typer.Typer(help="Train the screening models that ship with Hallmark.", no_args_is_help=True)


@train_app.command("prompt-classifier")
def train_prompt_classifier(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the weights (.npz).")],
    data: Annotated[Path, typer.Option(help="The shared data folder (prompts/, train_prompts/).")] = Path(
        "../shared/data"
    ),
    policy: Annotated[
        Path | None, typer.Option(help="Policy whose categories and exemplars to train (default: shipped).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, max=500, help="Training epochs of each head [default: as shipped].")
    ] = None,
    heads: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=16,
            help="Heads trained from seeds SEED, SEED+1, ... and averaged [default: as shipped].",
        ),
    ] = None,
    seed: int = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most N examples per source (quick runs).")
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="An .npz file caching the encoder's pooled layers (float16) between runs."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    without_non_commercial: Annotated[
        bool,
        typer.Option(help="Leave out the sources licensed for non-commercial use only (CC BY-NC)."),
    ] = False,
) -> None:
    """Rebuild the prompt classifier from ../shared/data, the written video prompts and the
    policy's exemplars. `--output moderation/weights/prompt_head.npz` rebuilds the shipped one."""
    from hallmark.compose import configure_torch
    from moderation import HeadWeights, MiniLMEncoder
    from moderation.train import NON_COMMERCIAL, SHIPPED, DataError, train
    from policy import Policy, PolicyError

    if output.exists() and not overwrite:
        raise fail(f"{output} exists; pass --overwrite to replace it")
    settings = load_settings()
    try:
        loaded = Policy.load(policy)
    except PolicyError as exc:
        raise fail(str(exc)) from exc
    configure_torch(settings)
    with console.status("Loading all-MiniLM-L6-v2..."):
        encoder = MiniLMEncoder(device=settings.device)
    try:
        recipe = replace(SHIPPED, epochs=epochs or SHIPPED.epochs, heads=heads or SHIPPED.heads)
        leave_out = (lambda e: e.source in NON_COMMERCIAL) if without_non_commercial else None
        weights, report = train(
            data,
            loaded,
            encoder,
            cache=cache,
            recipe=recipe,
            seed=seed,
            limit=limit,
            leave_out=leave_out,
            progress=lambda message: console.print(message, highlight=False),
        )
    except DataError as exc:
        raise fail(str(exc)) from exc
    weights.save(output)
    table = Table(title=f"Positives per category (policy {loaded.label})", title_justify="left")
    for column in ("category", "train", "calibration", "test", "fusion: head, exemplar, profanity, bias"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, counts in report.categories.items():
        table.add_row(
            category,
            *(str(counts[s]) for s in ("train", "calibration", "test")),
            ", ".join(f"{c:+.2f}" for c in report.calibration[category]),
        )
    Console().print(table)
    totals = {split: sum(counts.values()) for split, counts in report.counts.items()}
    Console().print(f"examples: {totals}; trained in {report.seconds:.0f} s")
    Console().print(
        f"[green]wrote[/] {output} ({output.stat().st_size // 1024} KiB, {HeadWeights.load(output).version})"
    )
