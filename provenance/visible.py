"""Visible watermark: a semi-transparent text label drawn on every frame."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from policy import VisibleWatermarkPolicy


class VisibleWatermark:
    name = "visible-label"
    version = "1"

    def __init__(self, policy: VisibleWatermarkPolicy) -> None:
        self._policy = policy

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """Return frames (T,H,W,3 uint8) with the label blended in; unchanged when disabled."""
        if not self._policy.enabled:
            return frames
        colour, alpha = self._overlay(frames.shape[2], frames.shape[1])
        out = frames.astype(np.float32) * (1.0 - alpha) + colour * alpha
        return out.round().astype(np.uint8)

    def _overlay(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """The label as an RGB image and an alpha mask (H,W,1), rendered once per frame size."""
        size = max(10, height // 14)
        font = ImageFont.load_default(size=size)
        layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        text = self._policy.text
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=1)
        margin = max(4, size // 2)
        x = margin if "left" in self._policy.position else width - (right - left) - margin
        y = margin if "top" in self._policy.position else height - (bottom - top) - margin
        draw.text(
            (x - left, y - top),
            text,
            font=font,
            fill=(255, 255, 255, 255),
            stroke_width=1,
            stroke_fill=(0, 0, 0, 255),
        )
        rgba = np.asarray(layer).astype(np.float32)
        return rgba[..., :3], rgba[..., 3:] / 255.0 * self._policy.opacity
