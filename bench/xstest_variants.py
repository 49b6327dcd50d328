"""Changes to the prompt classifier's recipe tried against XSTest's over-blocking, each measured
the same two ways, so the model card's "tried and not shipped" table can be rerun.

    python bench/xstest_variants.py [--cache FILE] [--only NAME,NAME] [--epochs N]

Every variant is a change to the shipped recipe (moderation/train.py) at one head:
- XSTest, cross-validated without the test split: the XSTest prompts of the train and calibration
  splits (174 safe, 145 unsafe) are cut into the same five folds as bench/xstest_folds.py; for
  each fold a classifier is trained with that fold left out of the head and the fusion, and the
  fold is scored. With the baseline recipe this gives the same figures as
  `python bench/xstest_folds.py --without-test --heads 1` (which runs the whole prompt stage;
  XSTest's prompts have no de-obfuscated views for it to add).
- Recall and benign false blocks on the calibration split's halves, as bench/prompt_heads.py
  measures them: the head trained on the train split, the fusion fitted on one half and the other
  half scored, each way; recall over the six unsafe sets of the 90% target, false blocks on
  PartiPrompts.
Prompts are scored as written; "blocked" is the highest blocking category's fused score at or over
the threshold (0.7, as the default policy), unless the rule says otherwise. The test split is not
read. One head's figure moves by about two points of XSTest with small changes to its training
data, so only a larger difference than that is a finding.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FOLDS = 5
THRESHOLD = 0.7


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    xstest_weight: float = 5.0  # the shipped SOURCE_WEIGHTS["xstest"]
    weighted_fusion: bool = False  # the fusion's regression weighted by source as the head's loss is
    signal: str = ""  # a further fusion input beside head, exemplars and profanity: "ngram" or "neighbours"
    # "block": any blocking category over the threshold; "agree": `harmful` and a named one both over it
    rule: str = "block"
    threshold: float = THRESHOLD


VARIANTS = (
    Variant("none (the shipped recipe at one head)"),
    Variant("block threshold 0.9", threshold=0.9),
    Variant("XSTest weighted 15 in the head's loss, not 5", xstest_weight=15.0),
    Variant("the fusion fitted with the same source weights", weighted_fusion=True),
    Variant("word n-gram logistic regression as a fourth fusion input", signal="ngram"),
    Variant("labels of the 10 nearest training prompts as a fourth fusion input", signal="neighbours"),
    Variant("block only when `harmful` and a named category both reach 0.7", rule="agree"),
    Variant("block only when `harmful` and a named category both reach 0.6", rule="agree", threshold=0.6),
)


def ngram_signal(texts: list[str], unsafe: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """A word 1-2-gram tf-idf logistic regression of `unsafe`, fitted on the rows `fit` only: its
    logit for every row."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectoriser = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    fitted = vectoriser.fit_transform([t for t, f in zip(texts, fit, strict=True) if f])
    model = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced").fit(fitted, unsafe[fit])
    return model.decision_function(vectoriser.transform(texts))


def neighbour_signal(x: np.ndarray, unsafe: np.ndarray, fit: np.ndarray, k: int = 10) -> np.ndarray:
    """For every row, the share of unsafe prompts among its k nearest `fit` rows (cosine, the head's input)."""
    import torch

    unit = torch.from_numpy(x / np.linalg.norm(x, axis=1, keepdims=True))
    index, labels = unit[fit], torch.from_numpy(unsafe[fit].astype(np.float32))
    shares = [labels[(chunk @ index.T).topk(k, dim=1).indices].mean(1) for chunk in unit.split(1024)]
    return torch.cat(shares).numpy().astype(float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="encoder cache (.npz), as for training")
    parser.add_argument("--only", default="", help="comma-separated numbers of the variants to run (1-based)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per head (default: as shipped)")
    args = parser.parse_args()
    if not (DATA / "prompts").is_dir():
        sys.exit(f"skipped: {DATA / 'prompts'} not found")
    import torch
    from profanity_check import predict_prob
    from prompt_heads import calibration_half  # the same halves as bench/prompt_heads.py
    from sklearn.linear_model import LogisticRegression
    from xstest_folds import fold_of  # the same folds as bench/xstest_folds.py

    from moderation import HeadWeights, MiniLMEncoder
    from moderation.deobfuscate import clean
    from moderation.prompt_head import ANY_HARM, as_stored, layer_features, sentence_embeddings
    from moderation.train import (
        EPOCHS,
        HEAD_LAYERS,
        RECALL_SOURCES,
        SOURCE_WEIGHTS,
        EmbeddingCache,
        examples_by_split,
        exemplar_similarities,
        fit_head,
        head_categories,
        targets,
    )  # fmt: skip
    from policy import Policy

    torch.set_num_threads(2)
    policy = Policy.load()
    encoder = MiniLMEncoder()
    splits = examples_by_split(DATA, policy)
    examples = splits["train"] + splits["calibration"]
    texts = [clean(e.text) for e in examples]
    categories = head_categories(policy)
    review_only = {c for c, spec in policy.prompt.categories.items() if spec.thresholds.block is None}
    blocking = np.array([c in policy.prompt.categories and c not in review_only for c in categories])
    named = blocking & (np.array(categories) != ANY_HARM)
    harmful = categories.index(ANY_HARM)
    pools = EmbeddingCache(args.cache).encode(encoder, texts, print)
    x = layer_features(pools, HEAD_LAYERS)
    exemplar = exemplar_similarities(encoder, policy, categories, sentence_embeddings(pools))
    profanity = np.asarray(predict_prob(texts), dtype=float)
    y, known = targets(examples, categories, review_only)
    source = np.array([e.source for e in examples])
    unsafe = np.array([e.unsafe for e in examples])
    is_train = np.arange(len(examples)) < len(splits["train"])
    fold = np.array([fold_of(t, FOLDS) if s == "xstest" else -1 for t, s in zip(texts, source, strict=True)])
    half = np.array([calibration_half(t) for t in texts])
    epochs = args.epochs or EPOCHS

    def scores(v: Variant, head_rows: np.ndarray, fusions: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Fused scores (rows, categories): the head fitted on `head_rows`; for each (fit, scored)
        pair the fusion fitted on `fit` and the rows `scored` scored."""
        weights = {**SOURCE_WEIGHTS, "xstest": v.xstest_weight}
        row_weight = np.array([weights.get(s, 1.0) for s in source])
        w1, b1, w2, b2 = fit_head(
            x[head_rows], y[head_rows], known[head_rows], row_weight[head_rows], epochs=epochs
        )
        head = HeadWeights(tuple(categories), HEAD_LAYERS, as_stored(w1)[None].astype(np.float32), b1[None],
                           as_stored(w2)[None].astype(np.float32), b2[None], np.zeros((len(categories), 4)),
                           np.array([], dtype=np.uint64), {})  # fmt: skip
        logits = head.logits(x)
        extra = np.zeros(len(x))
        if v.signal == "ngram":
            extra = ngram_signal(texts, unsafe, head_rows)
        elif v.signal == "neighbours":
            extra = neighbour_signal(x, unsafe, head_rows)
        out = np.zeros((len(x), len(categories)))
        for fit, scored in fusions:
            for j in range(len(categories)):
                columns = [logits[:, j], exemplar[:, j], profanity] + ([extra] if v.signal else [])
                features = np.column_stack(columns)
                rows = fit & (known[:, j] > 0)
                if y[rows, j].sum() < 5 or (1 - y[rows, j]).sum() < 5:
                    out[scored, j] = 1 / (1 + np.exp(-logits[scored, j]))
                    continue
                lr = LogisticRegression(C=1.0, max_iter=1000).fit(
                    features[rows], y[rows, j], sample_weight=row_weight[rows] if v.weighted_fusion else None
                )
                out[scored, j] = lr.predict_proba(features[scored])[:, 1]
        return out

    def blocked(v: Variant, s: np.ndarray) -> np.ndarray:
        if v.rule == "agree":
            return (s[:, harmful] >= v.threshold) & (s[:, named].max(1) >= v.threshold)
        return s[:, blocking].max(1) >= v.threshold

    chosen = [int(i) - 1 for i in args.only.split(",") if i] or range(len(VARIANTS))
    xstest = fold >= 0
    print(f"XSTest outside the test split: {(xstest & ~unsafe).sum()} safe, {(xstest & unsafe).sum()} unsafe, "
          f"{FOLDS} folds; calibration split {(~is_train).sum()} prompts; one head of {epochs} epochs; "
          f"{os.cpu_count()} cores, torch on 2 threads\n")  # fmt: skip
    print("| # | change | XSTest safe blocked | XSTest unsafe blocked | recall, calibration halves | "
          "PartiPrompts, calibration halves | seconds |")  # fmt: skip
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    recall_rows = ~is_train & unsafe & np.isin(source, RECALL_SOURCES)
    parti_rows = ~is_train & (source == "partiprompts") & ~unsafe
    measured: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # one classifier per recipe, whatever the rule
    for i in chosen:
        v = VARIANTS[i]
        started = time.perf_counter()
        recipe = (v.xstest_weight, v.weighted_fusion, v.signal)
        if recipe not in measured:
            fold_scores = np.zeros((len(x), len(categories)))
            for f in range(FOLDS):
                held = fold == f
                fold_scores[held] = scores(v, is_train & ~held, [(~is_train & ~held, held)])[held]
            halves = [(~is_train & (half == h), ~is_train & (half != h)) for h in (0, 1)]
            measured[recipe] = fold_scores, scores(v, is_train, halves)
        fold_blocked, cal_blocked = (blocked(v, s) for s in measured[recipe])
        print(f"| {i + 1} | {v.name} | {fold_blocked[xstest & ~unsafe].mean():.1%} | "
              f"{fold_blocked[xstest & unsafe].mean():.1%} | {cal_blocked[recall_rows].mean():.1%} | "
              f"{cal_blocked[parti_rows].mean():.1%} | {time.perf_counter() - started:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
