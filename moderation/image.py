"""Image classifiers: NudeNet's bundled ONNX detector, for input images and output frames."""

from __future__ import annotations

from importlib import metadata

import numpy as np

from moderation.aggregate import frame_verdict
from moderation.verdict import Verdict, decide
from policy import FrameAggregation, NudityRule


class NudityDetector:
    """NudeNet's 320n detector (ships inside the nudenet wheel). Takes RGB uint8 arrays."""

    name = "nudenet-320n"

    def __init__(self) -> None:
        from nudenet import NudeDetector

        self._detector = NudeDetector()
        self.version = metadata.version("nudenet")

    def detect(self, rgb: np.ndarray) -> list[dict]:
        """Detections as NudeNet gives them: {"class", "score", "box"}."""
        bgra = np.ascontiguousarray(np.concatenate([rgb[..., ::-1], _opaque(rgb)], axis=-1))
        return self._detector.detect(bgra)


def _opaque(rgb: np.ndarray) -> np.ndarray:
    return np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)


class NudityClassifier:
    """Highest confidence among the policy's NudeNet labels, over one image or every frame."""

    def __init__(
        self,
        detector: NudityDetector,
        rule: NudityRule,
        stage: str,
        aggregation: FrameAggregation | None = None,
    ) -> None:
        self._detector = detector
        self._rule = rule
        self._stage = stage
        self._aggregation = aggregation or FrameAggregation()
        self.name = detector.name
        self.version = detector.version

    def image_score(self, image: np.ndarray) -> tuple[float, str]:
        """The highest confidence among the rule's labels in one image, and that label."""
        best, label = 0.0, ""
        for det in self._detector.detect(image):
            if det["class"] in self._rule.labels and det["score"] > best:
                best, label = float(det["score"]), str(det["class"])
        return best, label

    def classify(self, images: np.ndarray) -> list[Verdict]:
        """`images` is one (H,W,3) image or a (T,H,W,3) stack of frames, RGB uint8."""
        rule = self._rule
        if images.ndim == 3:
            score, label = self.image_score(images)
            return [
                decide(self._stage, self.name, self.version, rule.category, score, rule.thresholds, label)
            ]
        scored = [self.image_score(frame) for frame in images]
        scores = np.array([s for s, _ in scored])
        label = scored[int(np.argmax(scores))][1]
        return [
            frame_verdict(
                self._stage,
                self.name,
                self.version,
                rule.category,
                scores,
                rule.thresholds,
                self._aggregation,
                detail=label,
            )
        ]
