"""Measuring prompt screening on labelled prompts: precision, recall, false-block rate, AUPRC and
latency, overall and per category. `hallmark eval prompts` and bench/moderation.py use it.

A prompt counts as blocked when any verdict's action is block; its score for the precision-recall
curve is the highest verdict score, which is what a single policy threshold would cut.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from moderation.verdict import Verdict
from policy import Action


@dataclass(frozen=True)
class LabeledPrompt:
    text: str
    unsafe: bool
    category: str | None = None  # the data set's own category, when it has one


@dataclass(frozen=True)
class Scored:
    prompt: LabeledPrompt
    score: float  # the highest verdict score
    blocked: bool
    flagged: bool
    seconds: float


@dataclass
class Metrics:
    n: int
    unsafe: int
    blocked: int
    true_blocks: int
    false_blocks: int
    precision: float | None  # of the blocked, the share that were unsafe
    recall: float | None  # of the unsafe, the share blocked
    false_block_rate: float | None  # of the safe, the share blocked
    flag_rate: float  # released but queued for review
    auprc: float | None  # average precision of the score against the label
    p50_ms: float
    p95_ms: float
    prompts_per_s: float  # prompts scored per second of wall time
    by_category: dict[str, float] = field(default_factory=dict)  # recall (unsafe) or block rate (safe)


class DatasetError(ValueError):
    pass


def load_prompts(path: Path, limit: int | None = None) -> list[LabeledPrompt]:
    """Labelled prompts from a file in one of the formats of ../shared/data or a plain CSV.

    - a CSV with `prompt` and `label` (safe/unsafe, 0/1, benign/harmful), and optional `category`
      (XSTest's `type` is used as its category);
    - AILuminate (`prompt_text`, `hazard`): every prompt unsafe;
    - PartiPrompts (TSV with `Prompt`, `Category`): every prompt safe.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        columns = set(reader.fieldnames or [])
        rows = list(reader)
    if {"prompt", "label"} <= columns:
        out = [
            LabeledPrompt(r["prompt"], _unsafe(r["label"], path), r.get("category") or r.get("type"))
            for r in rows
        ]
    elif {"prompt_text", "hazard"} <= columns:
        out = [LabeledPrompt(r["prompt_text"], True, r["hazard"]) for r in rows]
    elif {"Prompt", "Category"} <= columns:
        out = [LabeledPrompt(r["Prompt"], False, r["Category"]) for r in rows]
    else:
        raise DatasetError(
            f"{path}: unknown columns {sorted(columns)}; expected prompt,label[,category] "
            "(or the AILuminate or PartiPrompts layout)"
        )
    out = [p for p in out if p.text.strip()]
    return out[:limit] if limit else out


def _unsafe(label: str, path: Path) -> bool:
    value = label.strip().lower()
    if value in ("unsafe", "1", "harmful", "true", "yes"):
        return True
    if value in ("safe", "0", "benign", "false", "no"):
        return False
    raise DatasetError(f"{path}: label {label!r} is not safe/unsafe (or 0/1)")


def score_prompts(
    classifiers: Sequence,
    prompts: Sequence[LabeledPrompt],
    batch_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[Scored]:
    """Run the prompt stage's classifiers on every prompt, `batch_size` prompts at a time (a
    classifier with `classify_many` scores a batch in one pass, the others one prompt at a time).
    Each prompt's time is its batch's time shared out: with batches of one, its latency."""
    scored = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        texts = [p.text for p in batch]
        began = time.perf_counter()
        per_prompt: list[list[Verdict]] = [[] for _ in batch]
        for c in classifiers:
            many = c.classify_many(texts) if hasattr(c, "classify_many") else [c.classify(t) for t in texts]
            for verdicts, more in zip(per_prompt, many, strict=True):
                verdicts.extend(more)
        seconds = (time.perf_counter() - began) / len(batch)
        for prompt, verdicts in zip(batch, per_prompt, strict=True):
            actions = {v.action for v in verdicts}
            scored.append(
                Scored(
                    prompt,
                    max((v.score for v in verdicts), default=0.0),
                    Action.block in actions,
                    Action.flag in actions and Action.block not in actions,
                    seconds,
                )
            )
        if progress:
            progress(len(scored), len(prompts))
    return scored


def metrics(scored: Sequence[Scored]) -> Metrics:
    if not scored:
        raise DatasetError("no prompts to evaluate")
    unsafe = [s for s in scored if s.prompt.unsafe]
    safe = [s for s in scored if not s.prompt.unsafe]
    blocked = [s for s in scored if s.blocked]
    true_blocks = sum(1 for s in blocked if s.prompt.unsafe)
    times = sorted(s.seconds * 1000 for s in scored)
    by_category: dict[str, list[Scored]] = {}
    for s in scored:
        if s.prompt.category:
            by_category.setdefault(s.prompt.category, []).append(s)
    return Metrics(
        n=len(scored),
        unsafe=len(unsafe),
        blocked=len(blocked),
        true_blocks=true_blocks,
        false_blocks=len(blocked) - true_blocks,
        precision=true_blocks / len(blocked) if blocked and unsafe else None,
        recall=true_blocks / len(unsafe) if unsafe else None,
        false_block_rate=(len(blocked) - true_blocks) / len(safe) if safe else None,
        flag_rate=sum(s.flagged for s in scored) / len(scored),
        auprc=average_precision([s.score for s in scored], [s.prompt.unsafe for s in scored]),
        p50_ms=_percentile(times, 50),
        p95_ms=_percentile(times, 95),
        prompts_per_s=len(scored) / max(sum(s.seconds for s in scored), 1e-9),
        by_category={c: sum(s.blocked for s in rows) / len(rows) for c, rows in sorted(by_category.items())},
    )


def average_precision(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the precision-recall curve as average precision (sklearn's definition): the mean,
    over the positives, of the precision at the rank of each positive (ties ranked together)."""
    positives = sum(labels)
    if positives == 0 or positives == len(labels):
        return None  # undefined with one class only
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: -p[0])
    total, true_seen, seen, i = 0.0, 0, 0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        group_true = sum(label for _, label in pairs[i:j])
        true_seen += group_true
        seen += j - i
        total += group_true * (true_seen / seen)
        i = j
    return total / positives


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]
