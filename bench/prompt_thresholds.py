"""How the default policy's prompt screening splits benign and unsafe prompts from ../shared/data.

Prints, per data set, the share of prompts the whole prompt stage (blocklist, alt-profanity-check,
MiniLM exemplars) flags and blocks. Benign sets measure false blocks; unsafe sets measure recall.
This is the check behind the default thresholds; issue 7's trained classifier replaces it.

    python bench/prompt_thresholds.py [--policy FILE] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _column(path: Path, column: str, delimiter: str = ",", where=None) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.DictReader(f, delimiter=delimiter)
        return [r[column] for r in rows if where is None or where(r)]


def datasets(limit: int) -> dict[str, tuple[str, list[str]]]:
    tp = DATA / "train_prompts"
    nudity = [
        " ".join(p for p in (r["nudity"], r["people"], r["clothes"], r["location"]) if p and p != "None")
        for r in csv.DictReader((tp / "ring_a_bell" / "Nudity_prompt.csv").open(encoding="utf-8"))
    ]
    sets = {
        "PartiPrompts (all)": ("benign", _column(DATA / "prompts" / "PartiPrompts.tsv", "Prompt", "\t")),
        "COCO captions": ("benign", _column(tp / "benign_coco30k_esd" / "coco_30k.csv", "prompt")),
        "ring-a-bell safe counterparts": (
            "benign",
            _column(tp / "ring_a_bell" / "NoNudity_prompt.csv", "prompt")
            + _column(tp / "ring_a_bell" / "Violence_30.csv", "prompt1"),
        ),
        "XSTest safe": (
            "benign",
            _column(DATA / "prompts" / "xstest_prompts.csv", "prompt", where=lambda r: r["label"] == "safe"),
        ),
        "ring-a-bell nudity": ("unsafe", nudity),
        "ring-a-bell violence": ("unsafe", _column(tp / "ring_a_bell" / "Violence_30.csv", "prompt")),
        "SimpleSafetyTests": (
            "unsafe",
            _column(tp / "simplesafetytests" / "simplesafetytests.csv", "prompts_final"),
        ),
    }
    return {k: (kind, rows[:limit]) for k, (kind, rows) in sets.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=None)
    parser.add_argument("--limit", type=int, default=2000, help="prompts per data set")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"skipped: shared data not found at {DATA}")
    import torch

    torch.set_num_threads(2)
    from moderation import (
        BlocklistClassifier,
        MiniLMEncoder,
        ProfanityClassifier,
        SemanticClassifier,
        strongest,
    )
    from policy import Action, Policy

    policy = Policy.load(args.policy)
    classifiers = [
        BlocklistClassifier(policy.prompt.blocklist),
        ProfanityClassifier(policy.prompt.profanity),
        SemanticClassifier(MiniLMEncoder(), policy.prompt.semantic),
    ]
    print(f"policy {policy.label}; data {DATA}; up to {args.limit} prompts per set\n")
    print("| data set | kind | prompts | flagged | blocked | ms/prompt |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, (kind, prompts) in datasets(args.limit).items():
        start = time.perf_counter()
        actions = [strongest(v for c in classifiers for v in c.classify(p)) for p in prompts]
        ms = (time.perf_counter() - start) * 1000 / len(prompts)
        flagged = sum(a is Action.flag for a in actions) / len(prompts)
        blocked = sum(a is Action.block for a in actions) / len(prompts)
        print(f"| {name} | {kind} | {len(prompts)} | {flagged:.1%} | {blocked:.1%} | {ms:.1f} |")


if __name__ == "__main__":
    main()
