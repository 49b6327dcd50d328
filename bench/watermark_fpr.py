"""TileMark false positives: run the detector on many unmarked windows, each with a fresh random key.

    python bench/watermark_fpr.py [--trials 10000] [--seed 0]

Unmarked windows come from three sources, with random lengths, crops and fresh keys per trial:
  * natural video: ../shared/data/video/big_buck_bunny.mp4, windows of 12, 24 or 48 frames;
  * still images: the photographs scikit-image ships, randomly cropped;
  * generated frames: clips from the built-in tiny diffusers model (what the default pipeline makes).
Each trial runs the whole detector (scale search, sync correlation, up to 9 decodes) at the
default threshold (false-positive probability <= 1e-6). Printed: detections per source, decode
attempts, the bound attempts x 2^-32 on expected false detections, and the sync z-scores seen.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _work(frame: np.ndarray) -> np.ndarray:
    from provenance.tilemark import luma, work_size

    return cv2.resize(luma(frame), work_size(*frame.shape[:2]), interpolation=cv2.INTER_AREA).astype(
        np.float32
    )


def _random_crop(image: np.ndarray, rng: np.random.Generator, most: float = 0.25) -> np.ndarray:
    """Crop up to `most` of each side's length, then bring it back to working height."""
    from provenance.tilemark import work_size

    h, w = image.shape
    ch, cw = int(h * (1 - rng.uniform(0, most))), int(w * (1 - rng.uniform(0, most)))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = image[top : top + ch, left : left + cw]
    return cv2.resize(crop, work_size(ch, cw), interpolation=cv2.INTER_AREA)


def _clip_source(frames: list[np.ndarray]):
    """Window means in O(1) from cumulative sums of working-size luma."""
    stack = np.stack(frames)
    cumulative = np.concatenate([np.zeros((1, *stack.shape[1:]), np.float64), np.cumsum(stack, axis=0)])

    def window(rng: np.random.Generator) -> np.ndarray:
        length = min(int(rng.choice([12, 24, 48])), len(stack))
        start = int(rng.integers(0, len(stack) - length + 1))
        mean = ((cumulative[start + length] - cumulative[start]) / length).astype(np.float32)
        return _random_crop(mean, rng) if rng.random() < 0.5 else mean

    return window


def _bbb() -> list[np.ndarray]:
    from provenance.video import iter_frames

    return [_work(f) for f in iter_frames(DATA / "video" / "big_buck_bunny.mp4", format="gray")]


def _stills():
    from skimage import data

    images = []
    for name in (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "camera",
        "moon",
        "page",
        "text",
        "clock",
        "coins",
        "horse",
        "brick",
        "grass",
        "gravel",
        "cat",
        "immunohistochemistry",
        "retina",
    ):
        try:
            image = np.asarray(getattr(data, name)())
        except Exception:  # some need a download; this machine may have no internet
            continue
        if image.dtype == bool or image.max() <= 1:
            image = image.astype(np.float32) * 255
        image = image[..., :3] if image.ndim == 3 else image
        images.append(_work(np.ascontiguousarray(image.astype(np.uint8))))
    print(f"  {len(images)} still images", file=sys.stderr)

    def window(rng: np.random.Generator) -> np.ndarray:
        return _random_crop(images[int(rng.integers(len(images)))], rng, most=0.5)

    return window


def _generated(clips: int) -> list[list[np.ndarray]]:
    import torch

    from generator import DiffusersBackend, GenerationSpec

    torch.set_num_threads(2)
    backend = DiffusersBackend.tiny()
    prompts = ["a paper boat on a pond", "a city street at night", "a forest in autumn", "waves on a beach"]
    out = []
    for i in range(clips):
        spec = GenerationSpec(prompt=prompts[i % len(prompts)], seed=1000 + i, num_frames=16)
        out.append([_work(f) for f in backend.generate(spec)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generated-clips", type=int, default=8)
    args = parser.parse_args()
    video = DATA / "video" / "big_buck_bunny.mp4"
    if not video.exists():
        sys.exit(f"skipped: {video} not found")
    from provenance.tilemark import TileMark
    from provenance.watermark import WatermarkKey

    rng = np.random.default_rng(args.seed)
    generated = [_clip_source(c) for c in _generated(args.generated_clips)]
    sources = {
        "Big Buck Bunny windows": (0.6, [_clip_source(_bbb())]),
        "still images": (0.2, [_stills()]),
        "tiny-model clips": (0.2, generated),
    }
    counts = {name: [0, 0, 0] for name in sources}  # trials, detections, attempts
    zs: list[float] = []
    start = time.perf_counter()
    names, shares = list(sources), [sources[n][0] for n in sources]
    for trial in range(args.trials):
        name = names[int(rng.choice(len(names), p=shares))]
        makers = sources[name][1]
        mean = makers[int(rng.integers(len(makers)))](rng)
        key = WatermarkKey(int(rng.integers(256)), rng.bytes(32))
        reader = TileMark([key])
        result = reader.search_window(mean, int(reader.max_false_positive_probability * 2**32))
        counts[name][0] += 1
        counts[name][1] += result.payload is not None
        counts[name][2] += result.attempts
        zs.append(result.sync_score)
        if (trial + 1) % 500 == 0:
            print(
                f"  {trial + 1}/{args.trials} trials, {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.perf_counter() - start
    print(
        f"{args.trials} unmarked windows, a fresh random key each, default threshold (<= 1e-6); "
        f"{elapsed:.0f} s on {os.cpu_count()} cores ({args.trials / elapsed:.1f} windows/s)\n"
    )
    print(
        "| source | windows | detections | decode attempts | expected false detections (attempts x 2^-32) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (n, d, a) in counts.items():
        print(f"| {name} | {n} | {d} | {a} | {a * 2.0**-32:.1e} |")
    n, d, a = (sum(c[i] for c in counts.values()) for i in range(3))
    print(f"| all | {n} | {d} | {a} | {a * 2.0**-32:.1e} |")
    z = np.array(zs)
    print(
        f"\nbest sync z-score per window (not a detection criterion): median {np.median(z):.2f}, "
        f"99th percentile {np.percentile(z, 99):.2f}, max {z.max():.2f}"
    )


if __name__ == "__main__":
    main()
