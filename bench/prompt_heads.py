"""How many heads, trained how long: the prompt classifier's head choices compared on the
calibration split, and the time per prompt of one head against the shipped heads.

    python bench/prompt_heads.py [--cache FILE] [--threshold 0.7]

Quality: for each choice (heads x epochs), two classifiers are trained on the train split from
disjoint seeds (0.. and heads..), exactly as `hallmark train prompt-classifier` trains one. Each is
measured on the calibration split's two halves: the fusion is fitted on one half and the other is
scored, each way. Prompts are scored as written (no de-obfuscated views). "Differ" is the share of
calibration prompts that one classifier blocks and the other does not: how much a decision
depends on the seed. The test split is not read.

Latency: the default policy's prompt model with the shipped heads and with only the first of
them, the same prompts interleaved in one process, torch on 2 threads.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CHOICES = ((1, 40), (1, 80), (3, 40), (3, 80))  # (heads, epochs)


def calibration_half(cleaned: str) -> int:
    """Which of the calibration split's two halves a prompt falls in (bench/xstest_variants.py uses the same)."""
    return hashlib.sha256(("half" + cleaned).encode()).digest()[0] % 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="encoder cache (.npz), as for training")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--latency-prompts", type=int, default=200)
    args = parser.parse_args()
    if not (DATA / "prompts").is_dir():
        sys.exit(f"skipped: {DATA / 'prompts'} not found")
    import numpy as np
    import torch
    from profanity_check import predict_prob

    from moderation import HeadWeights, MiniLMEncoder, PromptModel
    from moderation.deobfuscate import clean
    from moderation.prompt_head import layer_features, sentence_embeddings
    from moderation.train import (
        HEAD_LAYERS,
        RECALL_SOURCES,
        SOURCE_WEIGHTS,
        EmbeddingCache,
        examples_by_split,
        exemplar_similarities,
        fit_fusion,
        fit_head,
        head_categories,
        targets,
    )  # fmt: skip
    from policy import Policy

    torch.set_num_threads(2)
    policy = Policy.load()
    encoder = MiniLMEncoder()
    splits = examples_by_split(DATA, policy)
    train, cal = splits["train"], splits["calibration"]
    categories = head_categories(policy)
    review_only = {c for c, spec in policy.prompt.categories.items() if spec.thresholds.block is None}
    blocking = np.array([c in policy.prompt.categories and c not in review_only for c in categories])
    pools = EmbeddingCache(args.cache).encode(encoder, [clean(e.text) for e in train + cal], print)
    x = layer_features(pools, HEAD_LAYERS)
    x_train, x_cal = x[: len(train)], x[len(train) :]
    y_train, k_train = targets(train, categories, review_only)
    y_cal, k_cal = targets(cal, categories, review_only)
    source_weights = np.array([SOURCE_WEIGHTS.get(e.source, 1.0) for e in train])
    exemplar = exemplar_similarities(encoder, policy, categories, sentence_embeddings(pools[len(train) :]))
    profanity = np.asarray(predict_prob([clean(e.text) for e in cal]), dtype=float)
    half = np.array([calibration_half(clean(e.text)) for e in cal])
    source = np.array([e.source for e in cal])
    unsafe = np.array([e.unsafe for e in cal])
    measured = unsafe & np.isin(source, RECALL_SOURCES)

    def blocked(seeds: range, epochs: int) -> np.ndarray:
        """Which calibration prompts a classifier of these heads blocks, its fusion from the other half."""
        heads = [fit_head(x_train, y_train, k_train, source_weights, epochs=epochs, seed=s) for s in seeds]
        w1, b1, w2, b2 = (np.stack(a) for a in zip(*heads, strict=True))
        fusion = np.tile([1.0, 0, 0, 0], (len(categories), 1))
        logits = HeadWeights(tuple(categories), HEAD_LAYERS, w1, b1, w2, b2, fusion, np.array([]), {}).logits(
            x_cal
        )
        score = np.zeros(len(cal))
        for h in (0, 1):
            fit, scored = half != h, half == h
            fusion = fit_fusion(logits[fit], exemplar[fit], profanity[fit], y_cal[fit], k_cal[fit])
            weights = HeadWeights(tuple(categories), HEAD_LAYERS, w1, b1, w2, b2, fusion, np.array([]), {})
            score[scored] = weights.fuse(logits[scored], exemplar[scored], profanity[scored])[
                :, blocking
            ].max(1)
        return score >= args.threshold

    def rate(b: np.ndarray, rows: np.ndarray) -> str:
        return f"{b[rows].mean():.1%}"

    print(f"calibration split ({len(cal)} prompts), block threshold {args.threshold}; "
          f"{os.cpu_count()} cores, torch on 2 threads")  # fmt: skip
    print()
    print(f"| heads x epochs | seeds | unsafe recall ({measured.sum()}) | false blocks PartiPrompts | "
          "false blocks XSTest safe | differ | seconds to train |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for heads, epochs in CHOICES:
        started = time.perf_counter()
        pair = [blocked(range(0, heads), epochs), blocked(range(heads, 2 * heads), epochs)]
        seconds = (time.perf_counter() - started) / 2
        columns = [
            " / ".join(rate(b, measured) for b in pair),
            " / ".join(rate(b, (source == "partiprompts") & ~unsafe) for b in pair),
            " / ".join(rate(b, (source == "xstest") & ~unsafe) for b in pair),
            f"{(pair[0] != pair[1]).mean():.1%}",
            f"{seconds:.0f}",
        ]
        seeds = " / ".join(
            str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in (range(heads), range(heads, 2 * heads))
        )
        print(f"| {heads} x {epochs} | {seeds} | " + " | ".join(columns) + " |", flush=True)

    shipped = HeadWeights.load()
    one = dataclasses.replace(
        shipped, w1=shipped.w1[:1], b1=shipped.b1[:1], w2=shipped.w2[:1], b2=shipped.b2[:1]
    )
    models = {f"{shipped.w1.shape[0]} heads (shipped)": PromptModel(encoder, shipped, policy.prompt.categories),
              "1 head (the first of them)": PromptModel(encoder, one, policy.prompt.categories)}  # fmt: skip
    with (DATA / "prompts" / "ailuminate_demo_en_us.csv").open(newline="", encoding="utf-8") as f:
        prompts = [r["prompt_text"] for r in csv.DictReader(f)][: args.latency_prompts]
    times: dict[str, list[float]] = {name: [] for name in models}
    for prompt in prompts:
        for name, model in models.items():
            started = time.perf_counter()
            model.classify(prompt)
            times[name].append((time.perf_counter() - started) * 1000)
    print()
    print(f"time per prompt, {len(prompts)} AILuminate prompts through the prompt model, interleaved")
    print()
    print("| heads | p50 ms | p95 ms |")
    print("| --- | ---: | ---: |")
    for name, ms in times.items():
        print(f"| {name} | {np.percentile(ms, 50):.1f} | {np.percentile(ms, 95):.1f} |")


if __name__ == "__main__":
    main()
