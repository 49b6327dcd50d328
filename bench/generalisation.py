"""Leave one source out: how the prompt stage does on a source of prompts it has never seen.

    python bench/generalisation.py [--cache FILE] [--only SOURCE,...] [--per-source N] [--recipe NAME]
                                   [--heads N] [--epochs N] [--no-perturb] [--without-non-commercial]

Every data set in ../shared/data/prompts and ../shared/data/train_prompts is a source (the
Adversarial Nibbler rewrites go with their prompts). For each source, the whole recipe of
`hallmark train prompt-classifier` (heads, fusion and its calibration, on the same splits) is
trained again without it: without its texts, without any other source's copy of them, and
without augmented copies of them. The source's prompts then go through the default policy's whole
prompt stage (blocklist, the fused classifier on every de-obfuscated view, language rule), exactly
as `PromptModel.classify` runs it, with those weights. Written prompts and the policy's
exemplars are Hallmark's own and always trained on.

Printed per held-out source: unsafe prompts blocked (recall) and flagged or blocked, benign prompts
blocked and flagged, AUPRC of the highest category score where the source has both labels; then per
kind of source, the macro mean over unsafe sources and the worst one. Then, on a seeded sample of
every held-out source, recall and benign false blocks under wrappers and obfuscations from
bench/perturb.py (written apart from the training augmentation in moderation/augment.py), the
deciding category against each source's own category, and how often a second category blocks.

`--recipe previous` trains the recipe before issue 19 (no source cap, no category negatives, no
augmentation) for the before/after table. Encodings are cached (`--cache`): the first run encodes
every text and view once (about 20 minutes on 2 cores), later runs only train.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(os.environ.get("HALLMARK_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# Kinds of source, for the per-kind means the targets are stated in.
KINDS = {
    "chat-style harmful requests": (
        "ailuminate",
        "simplesafetytests",
        "harmbench",
        "advbench",
        "strongreject",
        "safety_tuned_llamas",
    ),
    "unsafe visual prompts": ("nibbler", "ring-a-bell"),
    "hateful text": ("hatecheck", "toxigen", "davidson"),
    "benign captions and video prompts": (
        "partiprompts",
        "coco",
        "moviegenbench",
        "chronomagic_bench",
        "fetv",
    ),
    "alarming-but-safe questions": ("xstest",),
    "ordinary chat instructions": ("alpaca_harmless_instructions",),
}
SOURCES = tuple(s for sources in KINDS.values() for s in sources)


def source_of(example) -> str:
    """The held-out unit an example belongs to: a Nibbler rewrite goes with its prompt."""
    return "nibbler" if example.source == "nibbler-rewrite" else example.source


@dataclass
class Outcome:
    """One prompt through the prompt stage."""

    unsafe: bool
    blocked: bool
    flagged: bool  # flagged or blocked
    score: float  # the highest blocking-category score of the fused classifier
    deciding: str | None  # the blocking category the record names first
    blocking: frozenset[str] = field(default_factory=frozenset)  # every named category that blocked
    label: frozenset[str] = field(default_factory=frozenset)  # the source's categories, mapped
    flagging: frozenset[str] = field(default_factory=frozenset)  # every category flagged or blocked
    scores: dict[str, float] = field(default_factory=dict)  # the fused classifier's score per category
    named: str | None = (
        None  # the category the record names: the deciding one, or the one `harmful` attributes
    )
    shares: dict[str, float] = field(
        default_factory=dict
    )  # the share of the harm attributed to each category
    over: frozenset[str] = field(
        default_factory=frozenset
    )  # named categories at or over their block threshold


class CachedEncoder:
    """The MiniLM encoder with its layer pools read from the cache, so that every fold scores the
    same encodings the training used; the classifier code is the shipped one."""

    def __init__(self, encoder, store) -> None:
        self._encoder, self._store = encoder, store
        self.version, self.layer_shape = encoder.version, encoder.layer_shape

    def encode(self, texts):
        return self._encoder.encode(texts)

    def layer_pools(self, texts):
        return self._store.encode(self._encoder, texts, lambda _: None)


def auprc(scores: list[float], labels: list[bool]) -> float | None:
    """Average precision, where a source has at least ten prompts of each label."""
    if min(sum(labels), len(labels) - sum(labels)) < 10:
        return None
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def rate(outcomes: list[Outcome], attribute: str) -> float | None:
    return sum(getattr(o, attribute) for o in outcomes) / len(outcomes) if outcomes else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="encoder cache (.npz), as for training")
    parser.add_argument("--only", default="", help="comma-separated sources to hold out (default: all)")
    parser.add_argument(
        "--per-source", type=int, default=1000, help="held-out prompts scored per source and label"
    )
    parser.add_argument(
        "--perturbed", type=int, default=40, help="prompts per source and label for each wrapper"
    )
    parser.add_argument("--recipe", choices=("shipped", "previous"), default="shipped")
    parser.add_argument("--heads", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--requests", type=float, default=None, help="Recipe.requests: share also asked as chat requests"
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="score this weights file instead of training: each source's prompts it was not fitted on",
    )
    parser.add_argument("--save", type=Path, default=None, help="write every outcome as JSON lines")
    parser.add_argument("--no-perturb", action="store_true", help="skip the wrappers and obfuscations")
    parser.add_argument(
        "--without-non-commercial", action="store_true", help="leave the CC BY-NC sources out of every fold"
    )
    args = parser.parse_args()
    if not (DATA / "train_prompts").is_dir():
        sys.exit(f"skipped: {DATA / 'train_prompts'} not found")
    import torch

    from bench.perturb import OBFUSCATIONS, WRAPPERS, perturb
    from hallmark.compose import build_prompt_classifiers
    from hallmark.settings import Settings
    from moderation import HeadWeights, PromptModel
    from moderation.deobfuscate import clean, read_prompt
    from moderation.prompt_head import attributed_category, attributed_share
    from moderation.train import (
        NON_COMMERCIAL,
        PREVIOUS,
        SHIPPED,
        EmbeddingCache,
        examples_by_split,
        train,
        training_copies,
    )
    from moderation.verdict import ANY_HARM
    from policy import Action, Policy

    torch.set_num_threads(2)
    started = time.perf_counter()
    policy = Policy.load()
    classifiers = build_prompt_classifiers(Settings(), policy)
    shipped = next(c for c in classifiers if isinstance(c, PromptModel))
    recipe = SHIPPED if args.recipe == "shipped" else PREVIOUS
    recipe = replace(recipe, heads=args.heads or recipe.heads, epochs=args.epochs or recipe.epochs)
    if args.requests is not None:
        recipe = replace(recipe, requests=args.requests)
    excluded = set(NON_COMMERCIAL) if args.without_non_commercial else set()
    held_sources = [s for s in (args.only.split(",") if args.only else SOURCES) if s not in excluded]
    unknown = set(held_sources) - set(SOURCES)
    if unknown:
        sys.exit(f"unknown sources: {sorted(unknown)}; known: {', '.join(SOURCES)}")

    # Every example once (all splits), grouped by held-out source; a seeded sample is scored.
    everything = [e for split in examples_by_split(DATA, policy).values() for e in split]
    held: dict[str, list] = {}
    for source in held_sources:
        rng = random.Random(f"sample {source}")  # the same sample whatever else is held out
        rows = [e for e in everything if source_of(e) == source]
        sample = []
        for unsafe in (True, False):
            group = [e for e in rows if e.unsafe is unsafe]
            sample += rng.sample(group, min(args.per_source, len(group)))
        held[source] = sample
    perturbations = {} if args.no_perturb else {**WRAPPERS, **OBFUSCATIONS}
    perturbed: dict[tuple[str, str], list[tuple[object, str]]] = {}
    for source, sample in held.items():
        for unsafe in (True, False):
            group = [e for e in sample if e.unsafe is unsafe][: args.perturbed]
            for name in perturbations:
                texts = perturb([e.text for e in group], name, seed=0)
                perturbed[(source, name)] = perturbed.get((source, name), []) + list(
                    zip(group, texts, strict=True)
                )

    # Encode every text the folds will train on or score, once.
    store = EmbeddingCache(args.cache)
    to_encode = [clean(e.text) for e in everything]
    for split in ("train", "calibration"):
        to_encode += [
            clean(e.text) for e in training_copies([e for e in everything if e.split == split], recipe, 0)
        ]
    prompts = [e.text for sample in held.values() for e in sample] + [
        t for pairs in perturbed.values() for _, t in pairs
    ]
    to_encode += [v for p in prompts for v in read_prompt(p).texts]
    print(f"encoding {len(set(to_encode))} texts and views (cached ones are read)...", flush=True)
    store.encode(shipped.encoder, list(dict.fromkeys(to_encode)), lambda m: print("  " + m, flush=True))
    encoder = CachedEncoder(shipped.encoder, store)
    block_at = {
        c: spec.thresholds.block for c, spec in policy.prompt.categories.items() if spec.thresholds.block
    }
    blocking_categories = set(block_at)

    def outcome(stage: list, model: PromptModel, example, text: str) -> Outcome:
        verdicts = [v for c in stage for v in c.classify(text)]
        blocks = [v for v in verdicts if v.action is Action.block]
        named = {v.category for v in blocks if v.category != ANY_HARM and v.category in blocking_categories}
        deciding = max(blocks, key=lambda v: (v.category != ANY_HARM, v.score)).category if blocks else None
        score = max(
            v.score for v in verdicts if v.classifier == model.name and v.category in blocking_categories
        )
        flagged = any(v.action in (Action.block, Action.flag) for v in verdicts)
        flagging = frozenset(v.category for v in verdicts if v.action in (Action.block, Action.flag))
        ours = [v for v in verdicts if v.classifier == model.name]
        overall = next((v for v in ours if v.category == ANY_HARM), None)
        said = deciding if deciding != ANY_HARM else (overall and attributed_category(overall)) or ANY_HARM
        over = frozenset(
            v.category
            for v in ours
            if v.category in block_at and v.category != ANY_HARM and v.score >= block_at[v.category]
        )
        return Outcome(
            example.unsafe,
            bool(blocks),
            flagged,
            score,
            deciding,
            frozenset(named),
            example.categories,
            flagging,
            {v.category: v.score for v in ours},
            said,
            {v.category: share for v in ours if (share := attributed_share(v)) is not None},
            over,
        )

    print(
        f"\nrecipe: {recipe.describe()}; policy {policy.label}; {os.cpu_count()} cores, torch on 2 threads"
        + (
            f"; non-commercial sources left out of every fold: {', '.join(sorted(excluded))}"
            if excluded
            else ""
        )
    )
    print(
        "\n| held-out source | unsafe | blocked | flagged or blocked | benign | blocked | flagged | AUPRC | seconds |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    results: dict[str, list[Outcome]] = {}
    under: dict[str, list[tuple[Outcome, Outcome]]] = defaultdict(list)  # name -> (as written, perturbed)
    given = HeadWeights.load(args.weights) if args.weights else None
    for source in held_sources:
        fold_started = time.perf_counter()
        if given is not None:
            weights = given
            held[source] = [e for e in held[source] if not given.has_seen(e.text)]
            if not held[source]:
                print(f"| {source} | all seen by {args.weights} | | | | | | | |")
                continue
        else:
            held_texts = {clean(e.text) for e in everything if source_of(e) == source}
            weights, _ = train(
                DATA,
                policy,
                shipped.encoder,
                cache=store,
                recipe=recipe,
                leave_out=lambda e, held_texts=held_texts, source=source: (
                    source_of(e) == source or source_of(e) in excluded or clean(e.text) in held_texts
                ),
            )
        assert not any(weights.has_seen(e.text) for e in held[source])
        model = PromptModel(
            encoder,
            weights,
            policy.prompt.categories,
            evasion_action=policy.prompt.model.evasion,
            second_category_share=policy.prompt.model.second_category_share,
        )
        stage = [model if c is shipped else c for c in classifiers]
        results[source] = [outcome(stage, model, e, e.text) for e in held[source]]
        plain = dict(zip((e.text for e in held[source]), results[source], strict=True))
        for name in perturbations:
            under[name] += [
                (plain[e.text], outcome(stage, model, e, t))
                for e, t in perturbed[(source, name)]
                if e.text in plain
            ]
        unsafe = [o for o in results[source] if o.unsafe]
        benign = [o for o in results[source] if not o.unsafe]
        area = auprc([o.score for o in results[source]], [o.unsafe for o in results[source]])
        print(
            f"| {source} | {len(unsafe)} | {pct(rate(unsafe, 'blocked'))} | {pct(rate(unsafe, 'flagged'))} | "
            f"{len(benign)} | {pct(rate(benign, 'blocked'))} | {pct(rate(benign, 'flagged'))} | "
            f"{'-' if area is None else f'{area:.3f}'} | {time.perf_counter() - fold_started:.0f} |",
            flush=True,
        )

    if args.save:
        save(args.save, results, under)
    print_kinds(results)
    if under:
        print_perturbations(under)
    print_categories(results, policy.prompt.model.second_category_share)
    review_only = [c for c, spec in policy.prompt.categories.items() if spec.thresholds.block is None]
    for category in review_only:
        labelled = [o for outcomes in results.values() for o in outcomes if category in o.label]
        if labelled:
            hits = sum(category in o.flagging for o in labelled)
            print(
                f"\n{category} (the policy only flags it): {hits} of {len(labelled)} prompts labelled so are "
                f"flagged for it ({hits / len(labelled):.1%}); blocked for another category: "
                f"{sum(o.blocked for o in labelled)}"
            )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def save(
    path: Path, results: dict[str, list[Outcome]], under: dict[str, list[tuple[Outcome, Outcome]]]
) -> None:
    """Every outcome as a JSON line (source or perturbation, and the outcome), for analysis after a run."""
    import json

    def row(group: str, o: Outcome, **extra) -> str:
        data = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in vars(o).items()}
        return json.dumps({"group": group, **extra, **data})

    lines = [row(s, o) for s, outcomes in results.items() for o in outcomes]
    lines += [row(name, b, plain=row(name, a)) for name, pairs in under.items() for a, b in pairs]
    path.write_text("\n".join(lines) + "\n")


def print_kinds(results: dict[str, list[Outcome]]) -> None:
    """Per kind of source, the macro mean and the worst source. A source counts for a label where it
    has at least ten prompts of it (PartiPrompts has one text another source labels unsafe)."""

    def rates(sources, unsafe: bool) -> dict[str, float]:
        groups = {s: [o for o in results.get(s, []) if o.unsafe is unsafe] for s in sources}
        return {s: rate(group, "blocked") for s, group in groups.items() if len(group) >= 10}

    def macro(values: dict[str, float], worst) -> str:
        if not values:
            return "-"
        name = worst(values, key=values.get)
        return f"{sum(values.values()) / len(values):.1%} ({name} {values[name]:.1%})"

    print("\n| kind of source | sources | unsafe blocked, macro (worst) | benign blocked, macro (worst) |")
    print("| --- | ---: | ---: | ---: |")
    for kind, sources in [*KINDS.items(), ("all sources", tuple(results))]:
        recall, benign = rates(sources, True), rates(sources, False)
        if recall or benign:
            print(
                f"| {kind} | {len(set(recall) | set(benign))} | {macro(recall, min)} | {macro(benign, max)} |"
            )


def print_perturbations(under: dict[str, list[tuple[Outcome, Outcome]]]) -> None:
    print("\nWrappers and obfuscations (bench/perturb.py) on the first prompts of each held-out source's")
    print(
        "sample, each scored by the fold that left its source out; 'plain' is the same prompts as written.\n"
    )
    print(
        "| applied | unsafe | blocked plain | blocked | change | benign | blocked plain | blocked | change |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, pairs in under.items():
        cells = []
        for unsafe in (True, False):
            chosen = [(a, b) for a, b in pairs if a.unsafe is unsafe]
            before, after = rate([a for a, _ in chosen], "blocked"), rate([b for _, b in chosen], "blocked")
            change = "-" if before is None else f"{(after - before) * 100:+.1f}"
            cells += [str(len(chosen)), pct(before), pct(after), change]
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_categories(results: dict[str, list[Outcome]], floor: float) -> None:
    """How blocked prompts are attributed: the deciding category against the source's label, the
    category the record names (the deciding one, or the one the overall output attributes the harm
    to), how often a second category blocks, at the policy's floor and at others."""
    blocked = [o for outcomes in results.values() for o in outcomes if o.unsafe and o.blocked and o.label]
    if not blocked:
        return
    right = sum(o.deciding in o.label for o in blocked)
    said = sum(o.named in o.label for o in blocked)
    print(
        f"\nDeciding category: {right} of {len(blocked)} blocked prompts with a category label "
        f"({right / len(blocked):.1%}) are decided by one of their own categories; the record names one of "
        f"their own categories (deciding, or attributed by the overall output) for {said} ({said / len(blocked):.1%})."
    )
    several = [o for outcomes in results.values() for o in outcomes if o.blocked and len(o.blocking) > 1]
    every = [o for outcomes in results.values() for o in outcomes if o.blocked]
    extra = [o for o in blocked if o.blocking - o.label]
    print(
        f"Blocked by two or more named categories: {len(several)} of {len(every)} blocked prompts "
        f"({len(several) / len(every):.1%}); of the labelled ones, {len(extra)} ({len(extra) / len(blocked):.1%}) "
        f"are also blocked by a category outside their label (second_category_share {floor:g}).\n"
    )
    labels = sorted({c for o in blocked for c in o.label})
    decided = sorted({o.named for o in blocked})
    counts = Counter((min(o.label), o.named) for o in blocked)
    print("Rows: the source's label; columns: the category the record names.\n")
    print("| label \\ named | " + " | ".join(decided) + " |")
    print("| --- |" + " ---: |" * len(decided))
    for label in labels:
        print(f"| {label} | " + " | ".join(str(counts[(label, d)] or "") for d in decided) + " |")
    if not any(o.shares for o in every):
        return
    print(
        "\nThe second-category floor (`second_category_share`), recomputed from the same scores and shares:\n"
    )
    print(
        "| floor | blocked in 2+ named | labelled, also blocked outside label | deciding category right "
        "| right if the largest share decided |"
    )
    print("| ---: | ---: | ---: | ---: | ---: |")
    for f in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5):
        kept = {id(o): _kept(o, f) for o in every}
        two = sum(len(kept[id(o)]) > 1 for o in every)
        outside = sum(bool(kept[id(o)] - o.label) for o in blocked)
        deciding = sum(max(kept[id(o)], key=o.scores.get, default=o.named) in o.label for o in blocked)
        by_share = sum(
            max(kept[id(o)], key=lambda c, o=o: o.shares.get(c, 0), default=o.named) in o.label
            for o in blocked
        )
        print(
            f"| {f:g} | {two / len(every):.1%} | {outside / len(blocked):.1%} | {deciding / len(blocked):.1%} "
            f"| {by_share / len(blocked):.1%} |"
        )


def _kept(o: Outcome, floor: float) -> frozenset[str]:
    """The named categories that would block at this floor: the one with the largest share, and
    the others with at least `floor` of the harm."""
    if len(o.over) < 2:
        return o.over
    first = max(o.over, key=lambda c: o.shares.get(c, 0.0))
    return frozenset(c for c in o.over if c == first or o.shares.get(c, 0.0) >= floor)


if __name__ == "__main__":
    main()
