"""The attribution head alone, left one source out: which category it names for an unsafe prompt.

    python bench/attribution.py --cache FILE

For each source of ../shared/data with category labels, the attribution head (a softmax over the
named categories, moderation/train.fit_attribution) is trained on the train split without that
source, as the shipped recipe trains it (with the augmented copies), and names a category for
every unsafe prompt of the source that has a named category (all splits, as written). Printed per
held-out source: how often the named category is one of the prompt's own, for the shipped variant
(linear, every category weighted alike) and for the variants it was chosen over. This measures the
head on every labelled unsafe prompt, blocked or not; bench/generalisation.py measures what the
record names for the blocked ones. The cache is the one bench/generalisation.py fills.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SOURCES = (
    "ailuminate",
    "simplesafetytests",
    "harmbench",
    "strongreject",
    "safety_tuned_llamas",
    "nibbler",
    "hatecheck",
    "toxigen",
    "davidson",
)


def mlp(x: np.ndarray, targets: np.ndarray, epochs: int = 30, seed: int = 0):
    """A one-hidden-layer softmax (2,304 -> 256 -> categories), for comparison with the linear head."""
    import torch

    torch.manual_seed(seed)
    xt, tt = torch.from_numpy(x), torch.from_numpy(targets / targets.sum(1).mean())
    model = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(256, targets.shape[1]),
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(xt), generator=generator).split(256):
            loss = -(tt[batch] * torch.log_softmax(model(xt[batch]), 1)).sum() / tt[batch].sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()

    def scores(features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(features)).numpy()

    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache", type=Path, required=True, help="the encoder cache of bench/generalisation.py"
    )
    args = parser.parse_args()
    from bench.generalisation import DATA, source_of

    if not (DATA / "train_prompts").is_dir():
        sys.exit(f"skipped: {DATA / 'train_prompts'} not found")
    import torch

    from moderation.deobfuscate import clean
    from moderation.prompt_head import ANY_HARM, layer_features
    from moderation.train import (
        HEAD_LAYERS,
        SHIPPED,
        EmbeddingCache,
        attribution_targets,
        examples_by_split,
        fit_attribution,
        head_categories,
        training_copies,
    )
    from policy import Policy

    torch.set_num_threads(2)
    started = time.perf_counter()
    policy = Policy.load()
    named = [c for c in head_categories(policy) if c != ANY_HARM]
    store = EmbeddingCache(args.cache)
    everything = [e for split in examples_by_split(DATA, policy).values() for e in split]

    def features(examples) -> np.ndarray:
        texts = [clean(e.text) for e in examples]
        missing = sum(1 for t in texts if t not in store)
        if missing:
            sys.exit(
                f"{missing} texts are not in {args.cache}: run bench/generalisation.py --cache {args.cache} first"
            )
        return layer_features(store.encode(None, texts, lambda _: None), HEAD_LAYERS)

    def linear(x: np.ndarray, targets: np.ndarray):
        w, b = fit_attribution(x, targets)
        return lambda f: f @ w + b

    # name -> (how far each category's total is scaled to the mean: attribution_targets' balance, the fit)
    variants = {
        "linear, categories alike (shipped)": (1.0, linear),
        "linear, square root": (0.5, linear),
        "linear, as the data has them": (0.0, linear),
        "MLP 256, categories alike": (1.0, mlp),
    }
    right: dict[str, dict[str, float]] = {v: {} for v in variants}
    counts = {}
    for source in SOURCES:
        held = {clean(e.text) for e in everything if source_of(e) == source}
        train = [
            e
            for e in everything
            if e.split == "train" and source_of(e) != source and clean(e.text) not in held
        ]
        train += training_copies(train, SHIPPED, 0)
        targets = {b: attribution_targets(train, named, SHIPPED, balance=b) for b, _ in variants.values()}
        keep = targets[1.0].sum(1) > 0  # the rows with a category, whatever the balance
        x = features([e for e, k in zip(train, keep, strict=True) if k])
        test = [e for e in everything if source_of(e) == source and e.unsafe and e.categories & set(named)]
        counts[source] = len(test)
        x_test = features(test)
        for name, (balance, fit) in variants.items():
            scores = fit(x, targets[balance][keep])(x_test)
            right[name][source] = float(
                np.mean([named[int(np.argmax(s))] in e.categories for s, e in zip(scores, test, strict=True)])
            )
        print(
            f"  {source}: {len(test)} labelled unsafe prompts, {time.perf_counter() - started:.0f} s",
            flush=True,
        )

    print(f"\n{len(named)} named categories; recipe {SHIPPED.describe()}\n")
    print("| variant | " + " | ".join(f"{s} ({counts[s]})" for s in SOURCES) + " | macro | micro |")
    print("| --- |" + " ---: |" * (len(SOURCES) + 2))
    for name, per_source in right.items():
        micro = sum(per_source[s] * counts[s] for s in SOURCES) / sum(counts.values())
        cells = " | ".join(f"{per_source[s]:.1%}" for s in SOURCES)
        print(f"| {name} | {cells} | {np.mean(list(per_source.values())):.1%} | {micro:.1%} |")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
