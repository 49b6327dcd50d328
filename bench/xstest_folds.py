"""XSTest in full, cross-validated: every one of XSTest's 250 safe and 200 unsafe prompts scored by
a prompt classifier that was not fitted on it.

    python bench/xstest_folds.py [--folds 5] [--cache FILE] [--heads N] [--epochs N] [--without-test]

The held-out test split holds only 76 of XSTest's safe prompts, so one prompt moves its false-block
rate by 1.3 points. Here XSTest is cut into folds by the hash of each prompt's cleaned text; for
each fold the shipped recipe (`hallmark train prompt-classifier`: same data, seeds, heads and
epochs) is trained again with that fold's prompts left out of both the heads' training and the
fusion's calibration, and the fold's prompts then go through the default policy's whole prompt
stage (blocklist, the fused classifier on every de-obfuscated view, language rule) with those
weights. The rest of the data and the default policy are unchanged, so this measures the recipe on
XSTest, not the shipped file; each model is fitted on fewer XSTest prompts than the shipped one
(it leaves out a fifth of them besides the test split), so it errs on the pessimistic side.
The operating points cut the fused classifier's highest blocking-category score, as in
bench/moderation.py. With the encoder cache a fold takes about as long as one training run
(2 to 3 minutes on 2 cores; `--heads 1` takes about a third of that).

To choose between recipes, use `--without-test`: it scores only the XSTest prompts of the train
and calibration splits (174 safe, 145 unsafe), so the test split's stay unseen for the final
check with bench/moderation.py. `--heads` and `--epochs` train a cheaper recipe than the shipped
one for such comparisons; compare like with like.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
THRESHOLDS = (0.6, 0.7, 0.8, 0.9)


def fold_of(cleaned: str, folds: int) -> int:
    return int.from_bytes(hashlib.sha256(("fold" + cleaned).encode()).digest()[:4], "little") % folds


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a rate k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=None, help="encoder cache (.npz), as for training")
    parser.add_argument("--heads", type=int, default=None, help="heads per classifier (default: as shipped)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per head (default: as shipped)")
    parser.add_argument(
        "--without-test", action="store_true", help="leave the test split's XSTest prompts unread"
    )
    args = parser.parse_args()
    if not (DATA / "prompts").is_dir():
        sys.exit(f"skipped: {DATA / 'prompts'} not found")
    import torch

    from hallmark.compose import build_prompt_classifiers
    from hallmark.settings import Settings
    from moderation import PromptModel
    from moderation.deobfuscate import clean
    from moderation.train import EPOCHS, HEADS, Example, public_examples, train
    from policy import Action, Policy

    torch.set_num_threads(2)
    policy = Policy.load()
    classifiers = build_prompt_classifiers(Settings(), policy)
    shipped = next(c for c in classifiers if isinstance(c, PromptModel))
    encoder = shipped.encoder
    xstest = [e for e in public_examples(DATA) if e.source == "xstest"]
    if args.without_test:
        xstest = [e for e in xstest if e.split != "test"]
    heads, epochs = args.heads or HEADS, args.epochs or EPOCHS
    print(f"XSTest: {sum(not e.unsafe for e in xstest)} safe, {sum(e.unsafe for e in xstest)} unsafe prompts, "
          f"{'(train and calibration splits only) ' if args.without_test else ''}{args.folds} folds, "
          f"{heads} x {epochs} epochs; policy {policy.label}; {os.cpu_count()} cores, torch on 2 threads\n")  # fmt: skip
    print("| fold | safe | falsely blocked | unsafe | blocked | seconds |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    blocking = {c for c, spec in policy.prompt.categories.items() if spec.thresholds.block is not None}
    # Per prompt: the prompt, whether the stage blocked it, the fused classifier's highest blocking score.
    rows: list[tuple[Example, bool, float]] = []
    for fold in range(args.folds):
        started = time.perf_counter()
        held = [e for e in xstest if fold_of(clean(e.text), args.folds) == fold]
        held_texts = {clean(e.text) for e in held}
        weights, _ = train(
            DATA,
            policy,
            encoder,
            cache=args.cache,
            heads=heads,
            epochs=epochs,
            leave_out=lambda e, held_texts=held_texts: clean(e.text) in held_texts,
        )
        assert not any(weights.has_seen(e.text) for e in held)
        model = PromptModel(
            encoder, weights, policy.prompt.categories, evasion_action=policy.prompt.model.evasion
        )
        stage = [model if c is shipped else c for c in classifiers]
        for e in held:
            verdicts = [v for c in stage for v in c.classify(e.text)]
            top = max(v.score for v in verdicts if v.classifier == model.name and v.category in blocking)
            rows.append((e, any(v.action is Action.block for v in verdicts), top))
        safe = [b for e, b, _ in rows[-len(held) :] if not e.unsafe]
        unsafe = [b for e, b, _ in rows[-len(held) :] if e.unsafe]
        print(f"| {fold} | {len(safe)} | {sum(safe)} | {len(unsafe)} | {sum(unsafe)} | "
              f"{time.perf_counter() - started:.0f} |", flush=True)  # fmt: skip
    for label, unsafe in (("safe prompts falsely blocked", False), ("unsafe prompts blocked", True)):
        blocked = [b for e, b, _ in rows if e.unsafe is unsafe]
        low, high = wilson(sum(blocked), len(blocked))
        print(f"\n{label}: {sum(blocked)} of {len(blocked)} = {sum(blocked) / len(blocked):.1%} "
              f"(95% interval {low:.1%} to {high:.1%})")  # fmt: skip
    print()
    print("| block threshold | safe falsely blocked | unsafe blocked |")
    print("| ---: | ---: | ---: |")
    for t in THRESHOLDS:
        rates = [sum(top >= t for e, _, top in rows if e.unsafe is u) / sum(e.unsafe is u for e, _, _ in rows)
                 for u in (False, True)]  # fmt: skip
        print(f"| {t:.2f} | {rates[0]:.1%} | {rates[1]:.1%} |")
    print()
    print("| XSTest type (safe) | prompts | falsely blocked |")
    print("| --- | ---: | ---: |")
    for origin in sorted({e.origin for e, _, _ in rows if not e.unsafe}):
        blocked = [b for e, b, _ in rows if not e.unsafe and e.origin == origin]
        print(f"| {origin} | {len(blocked)} | {sum(blocked)} |")


if __name__ == "__main__":
    main()
