"""TileMark speed on this machine: embedding frames/s, and detection time for a 20-second 1080p file.

    python bench/watermark_speed.py [--seconds 20]

Embedding is timed on 48-frame windows of ../shared/data/video/big_buck_bunny.mp4 upscaled to
854x480 and 1920x1080 (invisible-watermark's dwtDctSvd on 8 frames for comparison). Detection is
timed the way `hallmark verify` runs it: frames stream from the H.264 file through PyAV as luma,
so decoding is included. A marked file stops at the first window that decodes; an unmarked file
is the worst case, every window read. Run it alone: other work on the machine slows it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _resize(frames: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in frames])


def _write_clip(path: Path, source: np.ndarray, seconds: float, mark) -> None:
    """A 1080p H.264 file of `seconds` at 24 fps, marked in 48-frame chunks when `mark` is given."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        total = int(seconds * 24)
        for start in range(0, total, 48):
            chunk = _resize(source[start % len(source) : start % len(source) + 48], 1920, 1080)
            chunk = mark(chunk) if mark else chunk
            for frame in chunk[: total - start]:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    video = DATA / "video" / "big_buck_bunny.mp4"
    if not video.exists():
        sys.exit(f"skipped: {video} not found")
    from provenance import InvisibleWatermark, TileMark, WatermarkKey
    from provenance.video import decode_frames, iter_frames

    source = decode_frames(video, max_frames=240 + int(args.seconds * 24) + 48)[240:]  # past the titles
    mark = TileMark([WatermarkKey(1, b"bench-key-not-secret-0123456789")])  # a public key: benchmark only
    payload = bytes.fromhex("0123456789ab")
    print(f"{os.cpu_count()} cores\n")
    print("| operation | size | frames | seconds | frames/s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for w, h in ((854, 480), (1920, 1080)):
        window = _resize(source[:48], w, h)
        mark.embed(window[:4], payload)  # warm up
        start = time.perf_counter()
        mark.embed(window, payload)
        took = time.perf_counter() - start
        print(f"| TileMark embed | {w}x{h} | 48 | {took:.2f} | {48 / took:.1f} |", flush=True)
        base = InvisibleWatermark("dwtDctSvd")
        start = time.perf_counter()
        base.embed(window[:8], payload)
        took = time.perf_counter() - start
        print(f"| dwtDctSvd embed (baseline) | {w}x{h} | 8 | {took:.2f} | {8 / took:.1f} |", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        marked, plain = Path(tmp) / "marked.mp4", Path(tmp) / "plain.mp4"
        _write_clip(marked, source, args.seconds, lambda f: mark.embed(f, payload))
        _write_clip(plain, source, args.seconds, None)
        start = time.perf_counter()
        count = sum(1 for _ in iter_frames(plain, format="gray"))
        took = time.perf_counter() - start
        print(f"| decode only (PyAV, luma) | 1920x1080 | {count} | {took:.2f} | {count / took:.1f} |")
        for name, path in (("marked", marked), ("unmarked: every window read", plain)):
            start = time.perf_counter()
            reading = mark.detect(iter_frames(path, format="gray"))
            took = time.perf_counter() - start
            found = f"payload {reading.payload}" if reading.detected else "nothing"
            print(
                f"| TileMark detect from file, {name} ({found}) | 1920x1080, {args.seconds:g} s | "
                f"{reading.frames_read} | {took:.2f} | {reading.frames_read / took:.1f} |"
            )


if __name__ == "__main__":
    main()
