"""H.264 MP4 encoding and decoding through PyAV (which ships libx264)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np


class VideoError(RuntimeError):
    """A file that is not a readable video, or frames that cannot be encoded."""


# What PyAV raises on a malformed file besides its own errors: metadata that is not text
# (UnicodeDecodeError from av.open), and sizes or values out of range.
_DECODE_ERRORS = (av.FFmpegError, UnicodeError, ValueError, OverflowError, IndexError, EOFError)


def encode_mp4(frames: np.ndarray, path: Path, fps: int = 8, crf: int = 18) -> None:
    """Write (T,H,W,3) uint8 RGB frames as H.264 (yuv420p) in an MP4 container."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoError(f"expected (T,H,W,3) uint8 frames, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    if t == 0 or h % 2 or w % 2:
        raise VideoError(f"H.264 yuv420p needs at least one frame of even size, got {t}x{w}x{h}")
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@contextmanager
def _open_video(path: Path, max_pixels: int | None = None) -> Iterator[av.container.InputContainer]:
    """The file opened by PyAV, refused unless it holds a video stream whose declared frame size
    is within `max_pixels` (checked before any frame is decoded: a small file can declare
    frames of 16000x16000, gigabytes each)."""
    with av.open(str(path)) as container:
        kind = container.format.name
        if kind == "image2" or kind.endswith("_pipe"):  # ffmpeg reads a still image as one frame
            raise VideoError(f"{path}: an image ({kind.removesuffix('_pipe')}), not a video")
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        codec = container.streams.video[0].codec_context
        if codec is None:
            raise VideoError(f"{path}: the video stream has no codec to decode it with")
        if max_pixels is not None:
            _check_size(path, codec, max_pixels)
        yield container


def _check_size(path: Path, frame, max_pixels: int) -> None:
    """A declared or decoded frame larger than the limit is refused."""
    if frame.width * frame.height > max_pixels:
        raise VideoError(
            f"{path}: frames of {frame.width}x{frame.height} are larger than this verifier's limit of "
            f"{max_pixels} pixels"
        )


def iter_frames(
    path: Path, max_frames: int | None = None, format: str = "rgb24", max_pixels: int | None = None
) -> Iterator[np.ndarray]:
    """Decode the first video stream frame by frame: (H,W,3) RGB, or (H,W) luma with format="gray".

    Nothing but the current frame is held, so a long 1080p video streams in constant memory.
    `max_pixels` bounds the frame size, declared and decoded (VideoError beyond it).
    """
    count = 0
    try:
        with _open_video(path, max_pixels) as container:
            container.streams.video[0].thread_type = "AUTO"
            for frame in container.decode(video=0):
                if max_pixels is not None:
                    _check_size(path, frame, max_pixels)
                yield frame.to_ndarray(format=format)
                count += 1
                if max_frames is not None and count >= max_frames:
                    break
    except _DECODE_ERRORS as exc:
        raise VideoError(f"{path}: cannot decode video: {exc}") from exc
    if not count:
        raise VideoError(f"{path}: video stream has no decodable frames")


def decode_frames(path: Path, max_frames: int | None = None) -> np.ndarray:
    """Decode the first video stream to (T,H,W,3) uint8 RGB."""
    return np.stack(list(iter_frames(path, max_frames)))


def thumbnail_strip(path: Path, count: int = 8, height: int = 96) -> bytes:
    """A PNG of `count` frames spread evenly over the video, side by side, each `height` pixels high."""
    import io

    from PIL import Image

    try:
        with _open_video(path) as container:
            stream = container.streams.video[0]
            total = stream.frames or 0
            wanted = (
                set(np.linspace(0, max(total - 1, 0), count).round().astype(int).tolist()) if total else None
            )
            picked = []
            for index, frame in enumerate(container.decode(video=0)):
                if wanted is None or index in wanted:
                    image = frame.to_image()
                    picked.append(image.resize((max(1, round(image.width * height / image.height)), height)))
                if wanted is None and len(picked) == count:
                    break
    except _DECODE_ERRORS as exc:
        raise VideoError(f"{path}: not a readable video: {exc}") from exc
    if not picked:
        raise VideoError(f"{path}: no frames")
    strip = Image.new("RGB", (sum(p.width for p in picked), height))
    x = 0
    for image in picked:
        strip.paste(image, (x, 0))
        x += image.width
    out = io.BytesIO()
    strip.save(out, format="PNG")
    return out.getvalue()
