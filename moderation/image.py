"""Image classifiers: NudeNet's bundled ONNX detector, for input images and output frames."""

from __future__ import annotations

from importlib import metadata

import numpy as np

from moderation.verdict import Verdict, decide
from policy import NudityRule


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

    def __init__(self, detector: NudityDetector, rule: NudityRule, stage: str) -> None:
        self._detector = detector
        self._rule = rule
        self._stage = stage
        self.name = detector.name
        self.version = detector.version

    def classify(self, images: np.ndarray) -> list[Verdict]:
        """`images` is one (H,W,3) image or a (T,H,W,3) stack of frames, RGB uint8."""
        stack = images[None] if images.ndim == 3 else images
        best, where = 0.0, ""
        for index, image in enumerate(stack):
            for det in self._detector.detect(image):
                if det["class"] in self._rule.labels and det["score"] > best:
                    best = float(det["score"])
                    where = f"{det['class']}" + (f" in frame {index}" if len(stack) > 1 else "")
        rule = self._rule
        return [decide(self._stage, self.name, self.version, rule.category, best, rule.thresholds, where)]
