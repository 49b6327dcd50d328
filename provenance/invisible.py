"""invisible-watermark's methods as a `VideoWatermark`: the baseline and an alternative to TileMark.

Embedding uses invisible-watermark's DWT-DCT(-SVD) methods. The 48 payload bits are followed by
a CRC-16 and the 64 bits are repeated across the blocks of each frame and across all frames; the
detector takes a majority vote per bit over frames and accepts only a payload whose CRC matches
(the chance that an unmarked video passes is about 2^-16 per read). It carries no key: anyone
with the library can read and forge it. bench/watermark.py compares it with TileMark.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

import cv2
import numpy as np

from provenance.watermark import WatermarkError, WatermarkReading

PAYLOAD_BITS = 48
CRC_BITS = 16


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def payload_to_bits(payload: bytes) -> list[int]:
    if len(payload) * 8 != PAYLOAD_BITS:
        raise WatermarkError(f"payload must be {PAYLOAD_BITS // 8} bytes, got {len(payload)}")
    word = payload + crc16(payload).to_bytes(2, "big")
    return [int(b) for b in np.unpackbits(np.frombuffer(word, dtype=np.uint8))]


def bits_to_payload(bits: np.ndarray) -> bytes | None:
    word = np.packbits(bits.astype(np.uint8)).tobytes()
    payload, check = word[: PAYLOAD_BITS // 8], int.from_bytes(word[PAYLOAD_BITS // 8 :], "big")
    return payload if crc16(payload) == check else None


class InvisibleWatermark:
    """invisible-watermark (imwatermark) with a CRC-checked payload and voting across frames."""

    def __init__(self, method: str = "dwtDctSvd", max_frames_read: int = 48) -> None:
        if method not in ("dwtDct", "dwtDctSvd"):
            raise WatermarkError(f"unsupported invisible-watermark method '{method}'")
        self.method = method
        self.name = f"invisible-watermark/{method}"
        self.key_id = None
        self.input_format = "rgb24"
        self.soft_binding_alg = f"org.hallmark.invisible-watermark.{method}"
        self.version = metadata.version("invisible-watermark")
        self._max_frames_read = max_frames_read

    def embed(self, frames: np.ndarray, payload: bytes) -> np.ndarray:
        from imwatermark import WatermarkEncoder

        if min(frames.shape[1:3]) < 128:
            raise WatermarkError(f"frames of {frames.shape[2]}x{frames.shape[1]} are too small to mark")
        encoder = WatermarkEncoder()
        encoder.set_watermark("bits", payload_to_bits(payload))
        marked = [
            cv2.cvtColor(encoder.encode(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), self.method), cv2.COLOR_BGR2RGB)
            for f in frames
        ]
        return np.stack(marked)

    def detect(self, frames: np.ndarray | Iterable[np.ndarray]) -> WatermarkReading:
        from imwatermark import WatermarkDecoder

        if not isinstance(frames, np.ndarray):
            listed = list(frames)
            frames = np.stack(listed) if listed else np.zeros((0, 0, 0, 3), np.uint8)
        if len(frames) == 0 or frames.ndim != 4 or min(frames.shape[1:3]) < 128:
            return WatermarkReading(False, None, self.name, None, None, 0)
        index = np.unique(
            np.linspace(0, len(frames) - 1, min(len(frames), self._max_frames_read)).astype(int)
        )
        decoder = WatermarkDecoder("bits", PAYLOAD_BITS + CRC_BITS)
        votes = np.array(
            [decoder.decode(cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR), self.method) for i in index],
            dtype=np.float32,
        )
        share = votes.mean(axis=0)
        bits = (share > 0.5).astype(np.uint8)
        agreement = float(np.where(bits == 1, share, 1.0 - share).mean())
        payload = bits_to_payload(bits)
        return WatermarkReading(
            payload is not None,
            payload.hex() if payload else None,
            self.name,
            None,
            2.0**-CRC_BITS if payload else None,
            len(index),
            {"bit_agreement": round(agreement, 4)},
        )
