"""`hallmark generate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hallmark.cli.common import EXIT_BLOCKED, EXIT_ERROR, audit_store, console, fail, load_settings

if TYPE_CHECKING:  # importing them loads numpy, PIL and provenance: the CLI starts faster without
    from generator.request import InputImage, Problem


def generate(
    prompt: Annotated[str, typer.Argument(help="What the video should show.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the signed MP4.")],
    image: Annotated[Path | None, typer.Option(help="Input image to start from (screened first).")] = None,
    frames: Annotated[int, typer.Option(help="Number of frames (at least 8).")] = 16,
    height: Annotated[int, typer.Option(help="Frame height, a multiple of 8.")] = 256,
    width: Annotated[int, typer.Option(help="Frame width, a multiple of 8.")] = 256,
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 8,
    seed: int = 0,
    fps: Annotated[int, typer.Option(help="Frames per second of the MP4.")] = 8,
    policy: Annotated[Path | None, typer.Option(help="Policy TOML file (default: the shipped one).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    tier: Annotated[
        str | None, typer.Option(help="Policy tier whose limits apply (default: the policy's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Generate a screened, watermarked, C2PA-signed MP4 and write its audit record.

    The request is checked first (generator/request.py): a bad one is refused, naming the field,
    and recorded as refused before any model loads."""
    from generator import GenerationRequest, check
    from generator.pipeline import new_result, refuse
    from generator.request import Problem
    from hallmark.compose import build_pipeline
    from policy import Policy, PolicyError

    settings = load_settings(policy=policy)
    try:
        rules = Policy.load(settings.policy)
    except PolicyError as exc:
        raise fail(str(exc)) from exc
    input_image, problems = _read_image(image, rules)
    request = GenerationRequest(
        prompt=prompt,
        output=output,
        image=input_image.pixels if input_image else None,
        image_file=input_image.ingredient if input_image else None,
        num_frames=frames,
        height=height,
        width=width,
        steps=steps,
        seed=seed,
        fps=fps,
        overwrite=overwrite,
        tier=tier,
    )
    problems += check(request, rules)
    if output.exists() and not overwrite:
        problems.append(Problem("output", f"{output} exists; pass --overwrite to replace it"))
    if problems:
        result = refuse(
            audit_store(settings),
            rules,
            new_result(request, rules, settings.model, "not loaded"),
            request,
            problems,
        )
        if as_json:
            print(json.dumps(_result_json(result, settings), indent=2))
        raise fail(f"{result.reason} (refused; audit record {result.record_id})")
    try:
        with console.status("Loading models and policy..."):
            pipeline = build_pipeline(settings, rules)
    except (PolicyError, OSError, ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from exc
    result = _run(pipeline, request)
    if as_json:
        print(json.dumps(_result_json(result, settings), indent=2))
    else:
        _print_result(result, settings)
    raise typer.Exit(EXIT_CODES[result.status])


# The exit code of each outcome: a refusal here is a race (the output appeared while the models
# loaded), a bad request like any other.
EXIT_CODES = {
    "released": 0,
    "blocked": EXIT_BLOCKED,
    "refused": 1,
    "error": EXIT_ERROR,
    "cancelled": EXIT_ERROR,
}


def _read_image(path: Path | None, rules) -> tuple[InputImage | None, list[Problem]]:
    """The input image, checked against the policy (the problems name the file)."""
    from generator.request import Problem, RequestRefused, read_image

    if path is None:
        return None, []
    try:
        return read_image(path.read_bytes(), rules, path.name), []
    except OSError as exc:
        return None, [Problem("image", f"{path}: {exc.strerror or exc}")]
    except RequestRefused as exc:
        return None, [Problem(p.field, f"{path}: {p.message}") for p in exc.problems]


def _run(pipeline, request):
    """Run the pipeline with a progress bar; an audit write that fails releases nothing."""
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def on_progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        try:
            return pipeline(request, progress=on_progress)
        except Exception as exc:  # the audit write itself failed: nothing was released
            raise fail(f"{type(exc).__name__}: {exc}. Nothing was released.", code=EXIT_ERROR) from exc


def _result_json(result, settings) -> dict:
    from audit.queries import watermark_view

    return {
        "generation_id": result.generation_id,
        "status": result.status,
        "output": str(result.output) if result.output else None,
        "output_sha256": result.output_sha256,
        "stage": result.stage,
        "reason": result.reason,
        "flagged": result.flagged,
        "policy": result.policy,
        "model": result.model,
        "watermark_payload": result.watermark_payload,
        "watermark": watermark_view(
            result.watermark_payload, result.watermark_method, result.watermark_key_id
        ),
        "manifest_label": result.manifest_label,
        "warnings": result.warnings,
        "audit": {"database": settings.resolved_database_url, "record_id": result.record_id},
        "verdicts": [v.to_dict() for v in result.verdicts],
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
    }


def _print_result(result, settings) -> None:
    out = Console()
    table = Table(title=f"Checks under policy {result.policy}", title_justify="left")
    for column in ("stage", "classifier", "category", "score", "threshold", "action", "note"):
        table.add_column(
            column,
            justify="right" if column in ("score", "threshold") else "left",
            no_wrap=column != "note",
            overflow="fold",
        )
    colours = {"allow": "green", "flag": "yellow", "block": "bold red"}
    for v in result.verdicts:
        note = "uncalibrated" if not v.calibrated else ""
        note = "; ".join(n for n in (note, v.detail if v.action.value != "allow" else "") if n)
        table.add_row(
            v.stage,
            v.classifier,
            v.category,
            f"{v.score:.3f}",
            f"{v.threshold:.3f}",
            f"[{colours[v.action.value]}]{v.action.value}[/]",
            note,
        )
    out.print(table)
    uncalibrated = sorted({v.classifier for v in result.verdicts if not v.calibrated})
    if uncalibrated:
        out.print(
            f"[yellow]uncalibrated:[/] {', '.join(uncalibrated)} ran without pretrained weights; "
            "its scores cannot block (set HALLMARK_CLIP_PRETRAINED)."
        )
    if result.status == "released":
        out.print(
            f"[bold green]released[/] {result.output}"
            + (" [yellow](flagged for review)[/]" if result.flagged else "")
        )
        out.print(f"  sha256 {result.output_sha256}")
        key = f", key id {result.watermark_key_id}" if result.watermark_key_id is not None else ""
        out.print(f"  watermark payload {result.watermark_payload} ({result.watermark_method}{key})")
        out.print(f"  C2PA manifest {result.manifest_label}")
        for warning in result.warnings:
            out.print(f"[yellow]warning:[/] {warning}")
    elif result.status == "blocked":
        out.print(f"[bold red]refused[/] at stage '{result.stage}': {result.reason}. No file was written.")
    else:
        out.print(f"[bold red]failed[/] at stage '{result.stage}': {result.reason}. No file was released.")
    out.print(f"generation id {result.generation_id}")
    out.print(f"audit record #{result.record_id} in {settings.resolved_database_url}")
