"""The Verdict: one classifier's explainable decision on one category."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from policy import Action, Thresholds

ANY_HARM = "harmful"  # the prompt classifier's overall output: unsafe, whatever the category


@dataclass(frozen=True)
class FrameScores:
    """A clip verdict's evidence: every frame's score, the frames at or over the threshold, the rule."""

    scores: tuple[float, ...]
    fired: tuple[int, ...]
    rule: str


@dataclass(frozen=True)
class Verdict:
    """Which stage and classifier scored which category, against which threshold, with what action."""

    stage: str  # "prompt", "image" or "frames"
    classifier: str
    classifier_version: str
    category: str
    score: float
    threshold: float
    action: Action
    calibrated: bool = True  # False: real model output, thresholds not tuned for its weights
    detail: str = ""  # what drove the score: nearest exemplar, matched term, frame index...
    frames: FrameScores | None = None  # frame-stage verdicts: the per-frame scores behind the clip score

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["action"] = self.action.value
        data["score"] = round(self.score, 6)
        if self.frames is None:
            del data["frames"]
        else:
            data["frames"]["scores"] = [round(s, 4) for s in self.frames.scores]
            data["frames"]["fired"] = list(self.frames.fired)
        return data


def decide(
    stage: str,
    classifier: str,
    version: str,
    category: str,
    score: float,
    thresholds: Thresholds,
    detail: str = "",
    calibrated: bool = True,
    max_action: Action = Action.block,
) -> Verdict:
    """Apply a policy's thresholds to a score; `max_action` caps what an uncalibrated model may do."""
    if not math.isfinite(score):
        # A classifier that produced no usable score must not let the request through.
        raise ValueError(f"{classifier} gave a non-finite score ({score}) for {category}")
    score = float(min(max(score, 0.0), 1.0))
    action, threshold = thresholds.decide(score)
    if action.rank > max_action.rank:
        action = max_action
    return Verdict(stage, classifier, version, category, score, threshold, action, calibrated, detail)


def strongest(verdicts: Iterable[Verdict]) -> Action:
    """The most severe action among verdicts (allow when there are none)."""
    return max((v.action for v in verdicts), key=lambda a: a.rank, default=Action.allow)


def first_blocking(verdicts: Iterable[Verdict]) -> Verdict | None:
    """The blocking verdict with the highest score, if any; a named category before the
    classifier's catch-all one, which says less about why."""
    blocking = [v for v in verdicts if v.action is Action.block]
    return max(blocking, key=lambda v: (v.category != ANY_HARM, v.score), default=None)
