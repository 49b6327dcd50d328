"""`hallmark calibrate`: fit screening thresholds to labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hallmark.cli.common import console, fail, load_settings, policy_path

calibrate_app = typer.Typer(help="Fit screening thresholds to labelled data.", no_args_is_help=True)


@calibrate_app.command("frames")
def calibrate_frames(
    positive: Annotated[Path, typer.Option(help="Folder of images that show the concept.")],
    negative: Annotated[Path, typer.Option(help="Folder of images that do not.")],
    concept: Annotated[
        str,
        typer.Option(help="A [frames.clip_concepts] name of the policy, or 'nudenet' for NudeNet's labels."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the calibrated policy.")],
    policy: Annotated[
        Path | None, typer.Option(help="Policy to start from (default: the configured one).")
    ] = None,
    target_fpr: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Largest share of negatives that may be blocked.")
    ] = 0.01,
    flag_fpr: Annotated[
        float | None, typer.Option(min=0.0, max=0.9, help="Largest share of negatives that may be flagged.")
    ] = 0.05,
    image_stage: Annotated[
        bool, typer.Option(help="With nudenet: also set the input-image thresholds ([image.nudity]).")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Compute a frame filter's thresholds for target false-positive rates from labelled folders,
    and write them into a copy of the policy."""
    from hallmark.compose import configure_torch
    from moderation import ClipConceptFilter, ClipLoadError, NudityClassifier, NudityDetector
    from moderation.calibrate import NUDENET, CalibrationError, calibrate, score_folder, write_thresholds
    from policy import Policy, PolicyError

    if output.exists() and not overwrite:
        raise fail(f"{output} exists; pass --overwrite to replace it")
    settings = load_settings(policy=policy)
    try:
        loaded = Policy.load(settings.policy)
    except PolicyError as exc:
        raise fail(str(exc)) from exc
    if concept != NUDENET and concept not in loaded.frames.clip_concepts:
        raise fail(
            f"the policy has no CLIP concept {concept!r} (it has: "
            f"{', '.join(loaded.frames.clip_concepts)}; or use 'nudenet')"
        )
    if flag_fpr is not None and flag_fpr < target_fpr:
        raise fail(f"--flag-fpr ({flag_fpr}) must be at least --target-fpr ({target_fpr})")
    configure_torch(settings)
    try:
        with console.status("Loading the model..."):
            if concept == NUDENET:
                nudity = NudityClassifier(NudityDetector(), loaded.frames.nudity, stage="frames")
                model = f"{nudity.name} {nudity.version}"

                def score(image):
                    return nudity.image_score(image)[0]
            else:
                clip = ClipConceptFilter(
                    {concept: loaded.frames.clip_concepts[concept]},
                    model_name=settings.clip_model,
                    pretrained=settings.clip_pretrained or None,
                    device=settings.device,
                )
                model = f"{clip.name} {clip.version}"

                def score(image):
                    return float(clip.frame_scores(image[None])[concept][0])

        scores = {}
        for name, folder in (("positive", positive), ("negative", negative)):
            with console.status(f"Scoring {name} images...") as status:
                scores[name] = score_folder(
                    folder, score, lambda n, s=status, k=name: s.update(f"Scoring {k} images: {n}")
                )
        result = calibrate(concept, model, scores["positive"], scores["negative"], target_fpr, flag_fpr)
        stages = ["frames", "image"] if concept == NUDENET and image_stage else ["frames"]
        written = write_thresholds(policy_path(settings), output, result, stages)
    except (CalibrationError, ClipLoadError, OSError) as exc:
        raise fail(str(exc)) from exc
    table = Table(title=f"{concept} on {model}", title_justify="left")
    for column in ("threshold", "value", "negatives over it (FPR)", "positives over it (TPR)"):
        table.add_column(column, justify="left" if column == "threshold" else "right")
    table.add_row(
        "block",
        f"{result.block:.6f}",
        f"{result.block_fpr:.2%} of {result.negatives}",
        f"{result.block_tpr:.2%} of {result.positives}",
    )
    if result.flag is not None:
        table.add_row(
            "flag",
            f"{result.flag:.6f}",
            f"{result.flag_fpr:.2%} of {result.negatives}",
            f"{result.flag_tpr:.2%} of {result.positives}",
        )
    Console().print(table)
    if concept != NUDENET and not clip.calibrated:
        console.print(
            "[yellow]warning:[/] CLIP has no pretrained weights (HALLMARK_CLIP_PRETRAINED): these "
            "thresholds fit a randomly initialised model and its verdicts stay capped at "
            f"{loaded.frames.uncalibrated_max_action.value}"
        )
    Console().print(f"[green]wrote[/] {output} ({written.label})")
