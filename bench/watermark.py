"""Invisible-watermark robustness, quality, false positives and speed, all measured in one run.

    python bench/watermark.py [--windows 72] [--baseline-windows 2] [--size 854x480] [--picture out.png]

Every method marks 2-second windows spread evenly over ../shared/data/video/big_buck_bunny.mp4
(resized to --size; the slow invisible-watermark methods get an evenly spaced subset of the same
windows), and each attack runs through real encoders (PyAV's libx264 and libvpx-vp9) or real
frame operations. Printed per method and attack: mean bit accuracy and the exact-payload rate
(windows read exactly / windows). Also printed are detections on the unmarked windows, PSNR and
SSIM of marked against unmarked frames, and embed and read frames per second (this machine).
--picture writes original | marked | difference x16 for one frame. Issue 3's targets are the
yardstick; bench/watermark_fpr.py measures false positives at scale.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


# -- methods ------------------------------------------------------------------------------------


@dataclass
class Method:
    name: str
    bits: int
    embed: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (frames, bits) -> frames
    read: Callable[[np.ndarray], tuple[np.ndarray, bool]]  # frames -> (voted bits, detected)


def _imwatermark(method: str, nbits: int) -> Method:
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    def embed(frames, bits):
        enc = WatermarkEncoder()
        enc.set_watermark("bits", [int(b) for b in bits])
        if method == "rivaGan":
            WatermarkEncoder.loadModel()
        return np.stack(
            [
                cv2.cvtColor(enc.encode(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), method), cv2.COLOR_BGR2RGB)
                for f in frames
            ]
        )

    def read(frames):
        dec = WatermarkDecoder("bits", nbits)
        if method == "rivaGan":
            WatermarkDecoder.loadModel()
        votes = np.array([dec.decode(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), method) for f in frames], np.float32)
        return (votes.mean(0) > 0.5).astype(np.uint8), False  # no detection test: raw bits only

    return Method(f"imwatermark {method} ({nbits} bits, raw)", nbits, embed, read)


def _tilemark() -> Method:
    from provenance.tilemark import PAYLOAD_BITS, TileMark, WatermarkKey

    wm = TileMark([WatermarkKey(1, b"bench-key-not-secret-0123456789")])  # a public key: benchmark only

    def embed(frames, bits):
        return wm.embed(frames, np.packbits(bits).tobytes())

    def read(frames):
        found = wm.detect(frames)
        if found.detected:
            return np.unpackbits(np.frombuffer(bytes.fromhex(found.payload), np.uint8)), True
        return np.zeros(PAYLOAD_BITS, np.uint8), False

    return Method("tilemark-v1 (48 bits + key id + CRC-24, K=7 code)", PAYLOAD_BITS, embed, read)


def _hallmark_default() -> Method:
    from provenance.invisible import CRC_BITS, PAYLOAD_BITS, InvisibleWatermark, payload_to_bits

    wm = InvisibleWatermark()

    def embed(frames, bits):
        return wm.embed(frames, np.packbits(bits[:PAYLOAD_BITS]).tobytes())

    def read(frames):
        reading = wm.detect(frames)
        if reading.detected:
            return np.array(payload_to_bits(bytes.fromhex(reading.payload)), np.uint8), True
        return np.zeros(PAYLOAD_BITS + CRC_BITS, np.uint8), False

    return Method("hallmark default (dwtDctSvd + CRC-16 + frame vote)", PAYLOAD_BITS, embed, read)


# -- attacks ------------------------------------------------------------------------------------


def _codec(frames: np.ndarray, codec: str, options: dict, fps: int) -> np.ndarray:
    import av

    from provenance.video import decode_frames

    h, w = frames.shape[1:3]
    frames = frames[:, : h - h % 2, : w - w % 2]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("v.webm" if "vpx" in codec else "v.mp4")
        with av.open(str(path), "w") as c:
            s = c.add_stream(codec, rate=fps)
            s.width, s.height, s.pix_fmt, s.options = frames.shape[2], frames.shape[1], "yuv420p", options
            for f in frames:
                c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            c.mux(s.encode())
        return decode_frames(path)


def _resize(frames, w, h):
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def _crop(frames, frac, centre=True):
    h, w = frames.shape[1:3]
    dh, dw = int(h * frac), int(w * frac)
    top, left = (dh // 2, dw // 2) if centre else (dh // 4, (3 * dw) // 4)
    return frames[:, top : top + h - dh, left : left + w - dw]


def attacks(fps: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    h264 = lambda crf: lambda f: _codec(f, "libx264", {"crf": str(crf)}, fps)  # noqa: E731
    return {
        "none": lambda f: f,
        "H.264 CRF 23": h264(23),
        "H.264 CRF 28": h264(28),
        "H.264 CRF 33": h264(33),
        "VP9 (crf 32)": lambda f: _codec(
            f, "libvpx-vp9", {"crf": "32", "b": "0", "deadline": "realtime"}, fps
        ),
        "downscale 50%": lambda f: _resize(f, f.shape[2] // 2, f.shape[1] // 2),
        "downscale to 360p": lambda f: _resize(f, round(f.shape[2] * 360 / f.shape[1]) // 2 * 2, 360),
        "centre crop 10%": lambda f: _crop(f, 0.10),
        "off-centre crop 10%": lambda f: _crop(f, 0.10, centre=False),
        "brightness +20%": lambda f: np.clip(f.astype(np.float32) * 1.2, 0, 255).astype(np.uint8),
        "contrast -20%": lambda f: np.clip((f.astype(np.float32) - 128) * 0.8 + 128, 0, 255).astype(np.uint8),
        "frame rate halved": lambda f: f[::2],
        "trimmed (first half dropped)": lambda f: f[len(f) // 2 :],
        "CRF 28 + 50% down + 5% crop": lambda f: h264(28)(
            _crop(_resize(f, f.shape[2] // 2, f.shape[1] // 2), 0.05)
        ),
    }


# -- run ----------------------------------------------------------------------------------------


def _side_by_side(original: np.ndarray, marked: np.ndarray, path: Path) -> None:
    """original | marked | |difference| x 16 over a 400x300 region at full resolution."""
    h, w = original.shape[:2]
    region = np.s_[h // 3 : h // 3 + 300, w // 3 : w // 3 + 400]
    original, marked = original[region], marked[region]
    diff = np.clip(np.abs(marked.astype(np.int16) - original) * 16, 0, 255).astype(np.uint8)
    picture = cv2.cvtColor(np.concatenate([original, marked, diff], axis=1), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), picture, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"  wrote {path}", file=sys.stderr)


class _Windows:
    """Source windows, resized to the benchmark size one at a time (1080p windows are large)."""

    def __init__(self, windows: list[np.ndarray], w: int, h: int) -> None:
        self._windows, self._w, self._h = windows, w, h

    def __len__(self) -> int:
        return len(self._windows)

    def __iter__(self):
        return (_resize(win, self._w, self._h) for win in self._windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=4, help="marked windows per method")
    parser.add_argument("--size", default="854x480")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--baseline-windows", type=int, default=2, help="windows for the invisible-watermark methods"
    )
    parser.add_argument("--rivagan-windows", type=int, default=1, help="rivaGan is slow: 512x512, 16 frames")
    parser.add_argument("--picture", type=Path, help="write a side-by-side PNG of one marked frame")
    parser.add_argument(
        "--methods",
        default="tilemark,baseline,dwtDct,dwtDctSvd,rivaGan",
        help="comma-separated subset of tilemark,baseline,dwtDct,dwtDctSvd,rivaGan",
    )
    args = parser.parse_args()
    video = DATA / "video" / "big_buck_bunny.mp4"
    if not video.exists():
        sys.exit(f"skipped: {video} not found")
    from skimage.metrics import structural_similarity

    from provenance.video import decode_frames

    w, h = (int(x) for x in args.size.split("x"))
    n = int(args.fps * args.seconds)
    source = decode_frames(video)
    # Windows spread evenly over the whole film, each resized when it is used.
    starts = np.linspace(0, len(source) - n, args.windows).astype(int)
    windows = _Windows([source[i : i + n] for i in starts], w, h)
    few = starts[np.linspace(0, len(starts) - 1, min(args.baseline_windows, len(starts))).astype(int)]
    few_windows = _Windows([source[i : i + n] for i in few], w, h)
    rivagan_windows = _Windows([source[i : i + 16] for i in few[: args.rivagan_windows]], 512, 512)
    rng = np.random.default_rng(0)
    available = {
        "tilemark": lambda: (_tilemark(), windows),
        "baseline": lambda: (_hallmark_default(), few_windows),
        "dwtDct": lambda: (_imwatermark("dwtDct", 48), few_windows),
        "dwtDctSvd": lambda: (_imwatermark("dwtDctSvd", 48), few_windows),
        "rivaGan": lambda: (_imwatermark("rivaGan", 32), rivagan_windows),
    }
    methods = [available[m]() for m in args.methods.split(",")]
    table = attacks(args.fps)
    print(
        f"Big Buck Bunny: {args.windows} windows of {args.seconds:g} s at {w}x{h}, {args.fps} fps, spread over "
        f"the film (invisible-watermark methods: {len(few)} of them; rivaGan: {args.rivagan_windows} x 16 frames "
        f"at 512x512); {os.cpu_count()} cores\n"
    )
    rows = []
    names = list(table)
    print("| method | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names), flush=True)
    for method, wins in methods:
        acc = {a: [] for a in table}
        exact = {a: [] for a in table}
        psnr, ssim, t_embed, t_read, n_embed, n_read = [], [], 0.0, 0.0, 0, 0
        false_detections = 0
        for number, win in enumerate(wins, 1):
            print(f"  {method.name}: window {number}/{len(wins)}", file=sys.stderr, flush=True)
            bits = rng.integers(0, 2, method.bits).astype(np.uint8)
            start = time.perf_counter()
            marked = method.embed(win, bits)
            t_embed += time.perf_counter() - start
            if args.picture and number == 1 and method.name.startswith("tilemark"):
                _side_by_side(win[0], marked[0], args.picture)
            n_embed += len(win)
            diff = (marked.astype(np.float64) - win) ** 2
            psnr.append(10 * np.log10(255**2 / max(diff.mean(), 1e-12)))
            ssim.append(
                np.mean(
                    [
                        structural_similarity(a, b, channel_axis=2)
                        for a, b in zip(win[::8], marked[::8], strict=True)
                    ]
                )
            )
            false_detections += int(method.read(win)[1])
            for name, attack in table.items():
                attacked = attack(marked)
                start = time.perf_counter()
                try:
                    got, _ = method.read(attacked)
                except RuntimeError:  # e.g. rivaGan refuses frames of 256 px or less: nothing read
                    got = np.zeros(method.bits, np.uint8)
                t_read += time.perf_counter() - start
                n_read += len(attacked)
                got = got[: method.bits]
                acc[name].append(float(np.mean(got == bits)))
                exact[name].append(bool(np.array_equal(got, bits)))
        rows.append(
            (
                method.name,
                acc,
                exact,
                psnr,
                ssim,
                n_embed / t_embed,
                n_read / t_read,
                false_detections,
                len(wins),
            )
        )
        cells = [
            f"{np.mean(acc[a]):.3f} / {np.mean(exact[a]):.1%} ({sum(exact[a])}/{len(exact[a])})"
            for a in names
        ]
        print(f"| {method.name} | " + " | ".join(cells) + " |", flush=True)

    print("\ncells: mean bit accuracy / exact-payload rate (windows read exactly/windows)\n")
    print("| method | PSNR dB | SSIM | embed frames/s | read frames/s | detections on unmarked windows |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, _, _, psnr, ssim, fe, fr, fd, nw in rows:
        fd_text = f"{fd} of {nw}" if name.startswith(("hallmark", "tilemark")) else "n/a (raw bits)"
        print(f"| {name} | {np.mean(psnr):.1f} | {np.mean(ssim):.3f} | {fe:.1f} | {fr:.1f} | {fd_text} |")


if __name__ == "__main__":
    main()
