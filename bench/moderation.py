"""Prompt screening on the evaluation sets of ../shared/data: precision, recall, false blocks, AUPRC
and latency of the default policy's prompt stage, per data set and per category.

    python bench/moderation.py [--policy FILE] [--limit N]

The sets are ../shared/data/prompts/: XSTest (250 safe-but-alarming and 200 unsafe prompts),
the AILuminate demo (1,200 hazardous prompts: recall) and PartiPrompts (1,632 benign text-to-image
prompts: false blocks). None of them trains anything (issue 7 trains on train_prompts/ only).
Latency is per prompt, the whole prompt stage on this machine's CPU with torch on 2 threads.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SETS = ("xstest_prompts.csv", "ailuminate_demo_en_us.csv", "PartiPrompts.tsv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts of each set")
    args = parser.parse_args()
    if not (DATA / "prompts").is_dir():
        sys.exit(f"skipped: {DATA / 'prompts'} not found")
    import torch

    from hallmark.compose import build_prompt_classifiers
    from hallmark.settings import Settings
    from moderation.evaluate import load_prompts, metrics, score_prompts
    from policy import Policy

    torch.set_num_threads(2)
    policy = Policy.load(args.policy)
    classifiers = build_prompt_classifiers(Settings(), policy)

    def classify(text: str):
        return [v for c in classifiers for v in c.classify(text)]

    print(f"policy {policy.label}; {os.cpu_count()} cores, torch on 2 threads\n")
    print("| data set | prompts | unsafe | blocked | precision | recall | false-block rate | flagged | AUPRC "
          "| p50 ms | p95 ms |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    categories = {}
    for name in SETS:
        m = metrics(score_prompts(classify, load_prompts(DATA / "prompts" / name, args.limit)))
        categories[name] = m.by_category
        print(f"| {name} | {m.n} | {m.unsafe} | {m.blocked} | {_pct(m.precision)} | {_pct(m.recall)} | "
              f"{_pct(m.false_block_rate)} | {m.flag_rate:.1%} | {'-' if m.auprc is None else f'{m.auprc:.3f}'} | "
              f"{m.p50_ms:.1f} | {m.p95_ms:.1f} |", flush=True)  # fmt: skip
    for name, rates in categories.items():
        print(f"\n{name}, blocked per category: " + ", ".join(f"{c} {r:.0%}" for c, r in rates.items()))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    main()
