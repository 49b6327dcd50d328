"""How fast the prompt stage is, one prompt at a time and in batches, and whether a long prompt is
read to its end.

    python bench/prompt_speed.py [--runs N] [--batch N]

The default policy's whole prompt stage (blocklist, the fused classifier on every de-obfuscated
view, language rule) on four sets of prompts, built here with a fixed seed from ../shared/data:

- FETV video prompts and AILuminate chat prompts (the first `--runs` of each), as written;
- long video prompts: ChronoMagic-Bench prompts joined into texts of 1,700 to 2,000 characters
  (the default policy's limit is 2,000);
- the same long texts with one HarmBench behaviour put at their start, middle or end (a third
  each), beside the same behaviours as written.

Printed per set: prompts per second in batches of `--batch` and one at a time, p50 and p95
latency one at a time, and the share blocked. HarmBench and ChronoMagic-Bench are training
sources of the shipped weights, so the blocked column measures whether the payload is *read*
inside a long benign text (compare it with the same behaviours as written), not how the classifier
generalises: bench/generalisation.py measures that.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
LONG_CHARS = (1700, 2000)


def long_texts(sentences: list[str], n: int, rng: random.Random) -> list[str]:
    """`n` texts of LONG_CHARS characters, each made of whole prompts drawn from `sentences`."""
    out = []
    while len(out) < n:
        parts: list[str] = []
        while len(" ".join(parts)) < LONG_CHARS[0]:
            parts.append(rng.choice(sentences).strip())
        text = " ".join(parts)
        if len(text) <= LONG_CHARS[1]:
            out.append(text)
    return out


def with_payload(text: str, payload: str, where: str) -> str:
    """`text` with `payload` as a sentence at its start, middle or end, trimmed back to 2,000 characters
    by dropping whole sentences from the benign text."""
    sentences = text.split(". ")
    while len(". ".join(sentences)) + len(payload) + 2 > LONG_CHARS[1] and len(sentences) > 1:
        sentences.pop(0 if where == "end" else -1)
    at = {"start": 0, "middle": len(sentences) // 2, "end": len(sentences)}[where]
    return ". ".join([*sentences[:at], payload.rstrip("."), *sentences[at:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="prompts per short set (long sets: a third)")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    if not (DATA / "train_prompts").is_dir():
        sys.exit(f"skipped: {DATA / 'train_prompts'} not found")
    import torch

    from hallmark.compose import build_prompt_classifiers
    from hallmark.settings import Settings
    from moderation.evaluate import LabeledPrompt, load_prompts, metrics, score_prompts
    from policy import Policy

    torch.set_num_threads(2)
    rng = random.Random(19)
    long_n = max(args.runs // 3, 3)
    video = [p.text for p in load_prompts(DATA / "train_prompts" / "chronomagic_bench.csv")]
    harmful = [p.text for p in load_prompts(DATA / "train_prompts" / "harmbench.csv") if p.unsafe]
    behaviours = rng.sample(harmful, long_n)
    benign_long = long_texts(video, long_n, rng)
    places = ["start", "middle", "end"]
    payloads = [
        with_payload(t, b, places[i % 3])
        for i, (t, b) in enumerate(zip(benign_long, behaviours, strict=True))
    ]
    sets = {
        "FETV video prompts": load_prompts(DATA / "train_prompts" / "fetv.csv", args.runs),
        "AILuminate chat prompts": load_prompts(DATA / "prompts" / "ailuminate_demo_en_us.csv", args.runs),
        "long video prompts, 1,700-2,000 chars": [LabeledPrompt(t, False) for t in benign_long],
        "HarmBench behaviours as written": [LabeledPrompt(t, True) for t in behaviours],
        "the same inside long video prompts": [LabeledPrompt(t, True) for t in payloads],
    }
    for name in places:
        sets[f"  ... at the {name}"] = [LabeledPrompt(t, True) for t in payloads[places.index(name) :: 3]]

    classifiers = build_prompt_classifiers(Settings(), Policy.load())
    score_prompts(classifiers, [LabeledPrompt("a warm-up prompt about a cat", False)])
    print(
        f"| prompts | n | batch {args.batch}: prompts/s | one at a time: prompts/s | p50 ms | p95 ms | blocked |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    started = time.perf_counter()
    for name, prompts in sets.items():
        batched = metrics(score_prompts(classifiers, prompts, batch_size=args.batch))
        single = metrics(score_prompts(classifiers, prompts, batch_size=1))
        blocked = single.blocked / single.n
        print(
            f"| {name} | {single.n} | {batched.prompts_per_s:.0f} | {single.prompts_per_s:.0f} | "
            f"{single.p50_ms:.1f} | {single.p95_ms:.1f} | {blocked:.1%} |",
            flush=True,
        )
    print(f"\ntotal {time.perf_counter() - started:.0f} s, torch on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
