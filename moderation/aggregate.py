"""Clip-level decisions from per-frame scores, by the policy's aggregation rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from moderation.verdict import FrameScores, Verdict, decide
from policy import Action, FrameAggregation, Thresholds


def clip_score(frame_scores: np.ndarray, rule: FrameAggregation) -> tuple[float, int]:
    """The clip's score and the frame that sets it: the highest k-th frame score over the windows."""
    scores = np.asarray(frame_scores, dtype=float)
    if scores.size == 0:
        raise ValueError("no frames to score")
    k = min(rule.k, len(scores))
    width = len(scores) if rule.window is None else min(rule.window, len(scores))
    best, where = -np.inf, 0
    for start in range(len(scores) - width + 1):
        window = scores[start : start + width]
        order = np.argsort(-window, kind="stable")
        if window[order[k - 1]] > best:
            best, where = float(window[order[k - 1]]), start + int(order[k - 1])
    return best, where


def frame_verdict(
    stage: str,
    classifier: str,
    version: str,
    category: str,
    frame_scores: np.ndarray,
    thresholds: Thresholds,
    rule: FrameAggregation,
    detail: str = "",
    calibrated: bool = True,
    max_action: Action = Action.block,
) -> Verdict:
    """One clip verdict: the aggregated score judged by the thresholds, with every frame's score
    and the frames at or over the threshold that decided (or, when allowed, the lowest one)."""
    score, frame = clip_score(frame_scores, rule)
    verdict = decide(stage, classifier, version, category, score, thresholds, detail, calibrated, max_action)
    fired = tuple(int(i) for i in np.flatnonzero(np.asarray(frame_scores) >= verdict.threshold))
    described = f"{rule.describe()}; frame {frame}" + (f": {detail}" if detail else "")
    return replace(
        verdict,
        detail=described,
        frames=FrameScores(tuple(float(s) for s in frame_scores), fired, rule.describe()),
    )
