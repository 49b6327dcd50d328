"""Time of each stage of the guarded pipeline on the embedded default.

    python bench/pipeline.py [--runs 3] [--frames 16] [--size 256] [--steps 8]

Prints one table: the median seconds per stage over the runs, its share of the total, and the
share taken by the safety stages (screening) and the provenance stages (watermarks, encoding,
signing, the release check, the audit write). Model loading is timed separately.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SAFETY = ("prompt", "image", "frames")
PROVENANCE = ("visible_watermark", "invisible_watermark", "encode", "sign", "release_check", "audit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from generator import GenerationRequest
    from generator.pipeline import STAGES
    from hallmark.compose import build_pipeline
    from hallmark.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), torch_threads=args.threads)
        start = time.perf_counter()
        pipeline = build_pipeline(settings)
        load = time.perf_counter() - start
        runs = []
        for i in range(args.runs):
            result = pipeline(
                GenerationRequest(
                    prompt="a paper boat drifting on a pond",
                    output=Path(tmp) / f"run{i}.mp4",
                    num_frames=args.frames,
                    height=args.size,
                    width=args.size,
                    steps=args.steps,
                    seed=i,
                )
            )
            if not result.released:
                sys.exit(f"run {i} was not released: {result.stage}: {result.reason}")
            runs.append(result.timings)

    median = {s: statistics.median(r.get(s, 0.0) for r in runs) for s in STAGES if any(s in r for r in runs)}
    total = sum(median.values())
    print(
        f"Hallmark pipeline, embedded default: {args.frames} frames {args.size}x{args.size}, {args.steps} steps, "
        f"median of {args.runs} runs; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch threads {args.threads}"
    )
    print(f"model and classifier loading (once per process): {load:.2f} s\n")
    print("| stage | kind | seconds | share |")
    print("| --- | --- | ---: | ---: |")
    for stage, seconds in median.items():
        kind = "safety" if stage in SAFETY else "provenance" if stage in PROVENANCE else "generation"
        print(f"| {stage} | {kind} | {seconds:.3f} | {seconds / total:.1%} |")
    safety = sum(v for k, v in median.items() if k in SAFETY)
    provenance = sum(v for k, v in median.items() if k in PROVENANCE)
    print(f"| **total** | | {total:.3f} | 100% |")
    print(
        f"\nsafety stages {safety:.3f} s ({safety / total:.1%}); provenance stages {provenance:.3f} s "
        f"({provenance / total:.1%}); safety + provenance {(safety + provenance) / total:.1%} of the total"
    )


if __name__ == "__main__":
    main()
