"""Calibrating frame filters on a user's labelled images: `hallmark calibrate frames`.

For one CLIP concept (or NudeNet's labels) the score of every image in a positive and a negative
folder is computed exactly as the frame filter scores one frame. The block threshold is the lowest
that keeps the false-positive rate on the negatives at or under the target; the flag threshold
the same at the flag target. Both are written into a copy of the policy file (comments kept), with
a comment saying which model, data and rates produced them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from policy import Policy, PolicyError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
NUDENET = "nudenet"


class CalibrationError(ValueError):
    pass


def iter_images(folder: Path) -> Iterator[np.ndarray]:
    """Every image under `folder` (recursively), as RGB uint8; unreadable files are an error."""
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: not a directory")
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            with Image.open(path) as image:
                yield np.array(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise CalibrationError(f"{path}: not a readable image: {exc}") from exc


def threshold_for_rate(negative_scores: np.ndarray, target: float) -> float:
    """The lowest threshold t with (negatives scoring >= t) / n <= target.

    That is just above the (k+1)-th highest negative score, k = floor(target * n); ties at that
    score all stay under the threshold.
    """
    # Scores are judged clamped to [0, 1] (moderation.verdict.decide), so they are compared so here.
    scores = np.sort(np.clip(np.asarray(negative_scores, dtype=float), 0.0, 1.0))[::-1]
    if scores.size == 0:
        raise CalibrationError("no negative images")
    if not 0.0 <= target < 1.0:
        raise CalibrationError(f"target rate {target} must be in [0, 1)")
    k = math.floor(target * len(scores) + 1e-9)
    # The next 6-decimal value above that score: what a policy file keeps, and it keeps the rate.
    threshold = math.ceil(float(scores[k]) * 1e6) / 1e6
    while threshold <= scores[k]:
        threshold = round(threshold + 1e-6, 6)
    return threshold


@dataclass(frozen=True)
class Calibration:
    concept: str
    model: str
    positives: int
    negatives: int
    flag: float | None
    block: float
    flag_fpr: float | None  # measured on the negatives
    block_fpr: float
    flag_tpr: float | None  # measured on the positives
    block_tpr: float

    def comment(self) -> str:
        flag = "" if self.flag is None else f"; flag fpr {self.flag_fpr:.4f} tpr {self.flag_tpr:.4f}"
        return (
            f"calibrated {datetime.now(UTC):%Y-%m-%d} by hallmark calibrate frames on {self.positives} "
            f"positive and {self.negatives} negative images with {self.model}: block fpr {self.block_fpr:.4f} "
            f"tpr {self.block_tpr:.4f}{flag}"
        )


def calibrate(
    concept: str,
    model: str,
    positive: np.ndarray,
    negative: np.ndarray,
    block_fpr: float,
    flag_fpr: float | None,
) -> Calibration:
    if len(positive) == 0:
        raise CalibrationError("no positive images")
    block = threshold_for_rate(negative, block_fpr)
    flag = None if flag_fpr is None else min(threshold_for_rate(negative, flag_fpr), block)
    if not (0.0 <= block <= 1.0) or (flag is not None and not 0.0 <= flag <= 1.0):
        raise CalibrationError(
            f"the threshold for {concept} falls outside [0, 1] (block {block:.4f}): the negatives score "
            "at the top of the range; add negatives or raise the target rate"
        )

    def rate(scores: np.ndarray, t: float) -> float:
        return float(np.mean(np.clip(np.asarray(scores), 0.0, 1.0) >= t))

    return Calibration(
        concept,
        model,
        len(positive),
        len(negative),
        flag,
        block,
        None if flag is None else rate(negative, flag),
        rate(negative, block),
        None if flag is None else rate(positive, flag),
        rate(positive, block),
    )


def write_thresholds(policy_file: Path, output: Path, calibration: Calibration, stages: list[str]) -> Policy:
    """Copy the policy with the new thresholds (and a comment) and check the result loads."""
    import tomlkit

    document = tomlkit.parse(policy_file.read_text(encoding="utf-8"))
    thresholds = tomlkit.inline_table()
    if calibration.flag is not None:
        thresholds["flag"] = calibration.flag
    thresholds["block"] = calibration.block
    for stage in stages:
        table = _table(document, stage, calibration.concept)
        table["thresholds"] = thresholds
        table["thresholds"].comment(calibration.comment())
    text = tomlkit.dumps(document)
    try:
        policy = Policy.from_toml(text.encode(), source=str(output))
    except PolicyError as exc:
        raise CalibrationError(f"the calibrated policy does not validate: {exc}") from exc
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)
    return policy


def _table(document, stage: str, concept: str):
    if concept == NUDENET:
        return document[stage]["nudity"]
    try:
        return document["frames"]["clip_concepts"][concept]
    except KeyError as exc:
        raise CalibrationError(f"the policy has no [frames.clip_concepts.{concept}]") from exc


def score_folder(
    folder: Path, score: Callable[[np.ndarray], float], progress: Callable[[int], None] = lambda _: None
) -> np.ndarray:
    scores = []
    for image in iter_images(folder):
        scores.append(score(image))
        progress(len(scores))
    if not scores:
        raise CalibrationError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return np.array(scores)
