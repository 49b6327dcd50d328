"""The invisible-watermark interface, its readings, and the deployment's watermark keys.

Two families implement `VideoWatermark`:

* `TileMark` (provenance/tilemark.py): Hallmark's keyed video watermark, the default. It
  survives re-encoding, downscaling and cropping, and reports a false-positive probability.
* `InvisibleWatermark` (provenance/invisible.py): invisible-watermark's dwtDct and dwtDctSvd
  with a CRC-16 and a vote across frames, kept as the baseline and as an alternative.

Watermark keys live in a TOML file (mode 0600), newest first; the first key that is not retired
embeds, every key detects, so a key can rotate without losing old videos:

    [[keys]]
    id = 2
    secret = "<64 hex digits>"

    [[keys]]
    id = 1
    secret = "<64 hex digits>"
    retired = true

For development, `ensure_dev_watermark_keys` creates one random key on first run. In production,
point HALLMARK_WATERMARK_KEYS at a file from your secret store; never commit it.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


class WatermarkError(RuntimeError):
    """Embedding failed, a payload of the wrong size was given, or the keys are unusable."""


@dataclass(frozen=True)
class WatermarkReading:
    detected: bool
    payload: str | None  # hex, when detected
    method: str
    key_id: int | None  # the embedding key's id, when the method carries one
    false_positive_probability: float | None  # chance that an unmarked video reads like this
    frames_read: int
    details: dict[str, float | int] = field(default_factory=dict)  # method-specific scores


class VideoWatermark(Protocol):
    name: str
    key_id: int | None  # the embedding key's id; None for methods without keys
    input_format: str  # what detect() needs: "gray" (luma) or "rgb24"
    soft_binding_alg: str  # its name in the C2PA soft-binding assertion

    def embed(self, frames: np.ndarray, payload: bytes) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB frames in, marked frames of the same shape out."""
        ...

    def detect(self, frames: np.ndarray | Iterable[np.ndarray]) -> WatermarkReading:
        """Read the payload from RGB frames (an array or any iterable of frames)."""
        ...


@dataclass(frozen=True)
class WatermarkKey:
    """A deployment's secret and its public id (0-255), which every mark carries."""

    key_id: int
    secret: bytes = field(repr=False)  # never printed
    retired: bool = False  # detect only

    def __post_init__(self) -> None:
        if not 0 <= self.key_id < 256:
            raise WatermarkError(f"watermark key id must be 0-255, got {self.key_id}")
        if len(self.secret) < 16:
            raise WatermarkError(f"watermark key {self.key_id}: the secret must be at least 16 bytes")


def load_watermark_keys(path: Path) -> list[WatermarkKey]:
    """Keys from a TOML key file, the embedding key first."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WatermarkError(f"{path}: cannot read watermark keys: {exc}") from exc
    entries = data.get("keys")
    if not isinstance(entries, list) or not entries:
        raise WatermarkError(f"{path}: expected one or more [[keys]] entries")
    keys = []
    for n, entry in enumerate(entries, 1):
        try:
            keys.append(
                WatermarkKey(
                    int(entry["id"]), bytes.fromhex(entry["secret"]), bool(entry.get("retired", False))
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WatermarkError(
                f"{path}: key {n}: needs an integer 'id' and a hex 'secret' ({exc})"
            ) from exc
    ids = [k.key_id for k in keys]
    if len(set(ids)) != len(ids):
        raise WatermarkError(f"{path}: key ids must be unique, got {ids}")
    active = [k for k in keys if not k.retired]
    if not active:
        raise WatermarkError(f"{path}: every key is retired; add a key to embed with")
    return [active[0], *(k for k in keys if k is not active[0])]


def write_watermark_keys(path: Path, keys: list[WatermarkKey]) -> None:
    """Write a key file readable by its owner only."""
    lines = []
    for key in keys:
        lines += ["[[keys]]", f"id = {key.key_id}", f'secret = "{key.secret.hex()}"']
        if key.retired:
            lines.append("retired = true")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))


def ensure_dev_watermark_keys(path: Path) -> list[WatermarkKey]:
    """The development key file, created with one random key on first use."""
    if not path.exists():
        write_watermark_keys(path, [WatermarkKey(1, secrets.token_bytes(32))])
    return load_watermark_keys(path)


def rotate_watermark_keys(path: Path) -> WatermarkKey:
    """Add a new embedding key (next free id) and retire the others; old videos still verify."""
    keys = load_watermark_keys(path)
    used = {k.key_id for k in keys}
    free = next((i for i in range(1, 256) if i not in used), None)
    if free is None:
        raise WatermarkError(f"{path}: all 255 key ids are used; remove a retired key first")
    new = WatermarkKey(free, secrets.token_bytes(32))
    write_watermark_keys(path, [new, *(WatermarkKey(k.key_id, k.secret, True) for k in keys)])
    return new
