"""Training the prompt classifier: `hallmark train prompt-classifier` rebuilds the shipped weights.

Data: ../shared/data (prompts/ and train_prompts/, described in its SOURCES.md), the video prompts
written for Hallmark in moderation/data/written_prompts.toml, and the policy's exemplars. Each
text falls in a split by the hash of its cleaned form (train 50%, calibration 20%, test 30%), so a
text and its duplicates always land together. The heads are fitted on train, the fusion (and so the
calibration) on calibration; the weights file remembers the hashes of both, and evaluation leaves
them out. Nothing is fitted on the test split.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import random
import string
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from moderation.deobfuscate import clean
from moderation.prompt_head import (
    ANY_HARM,
    HeadWeights,
    as_stored,
    layer_features,
    sentence_embeddings,
    text_hash,
)
from policy import Policy

WRITTEN_PROMPTS = Path(__file__).parent / "data" / "written_prompts.toml"
SPLITS = (("train", 50), ("calibration", 70), ("test", 100))  # cumulative percent of the hash
HEAD_LAYERS = (1, 2, 3, 4, 5, 6)  # the MiniLM hidden states the head reads (see moderation/prompt_head.py)
# Sources weighted up in the head's loss. XSTest and the written questions, games, fiction and
# definitions are the only text that teaches asking *about* harm apart from asking *for* it.
SOURCE_WEIGHTS = {"xstest": 5.0, "written": 2.0}
# Named categories that one text can truly belong to at once. Unsafe text labelled with one category
# teaches the others "not this" unless the two overlap: a pipe-bomb request is not hate speech.
OVERLAPS = frozenset(
    frozenset(pair)
    for pair in (
        ("sexual", "sexual_minors"),
        ("sexual", "harassment"),
        ("sexual_minors", "illegal"),
        ("violence", "extremism"),
        ("violence", "weapons"),
        ("violence", "hate"),
        ("violence", "harassment"),
        ("violence", "self_harm"),
        ("hate", "harassment"),
        ("hate", "extremism"),
        ("extremism", "weapons"),
        ("weapons", "illegal"),
        ("illegal", "deception"),
        ("deception", "harassment"),
        ("deception", "ip_misuse"),
    )
)


@dataclass(frozen=True)
class Recipe:
    """How the prompt classifier is trained. The shipped values were chosen on the
    leave-one-source-out table of bench/generalisation.py (see MODEL_CARD.md), never on a split of
    the sources trained on."""

    heads: int = 1  # trained from seeds seed, seed + 1, ...; their mean logit is the head signal
    epochs: int = 30
    source_weights: tuple[tuple[str, float], ...] = tuple(SOURCE_WEIGHTS.items())
    # A source with more rows than this in a split has its rows weighted down to this many in all,
    # so that no large source (tweets, captions) dominates the loss.
    source_cap: int | None = 2000
    # Loss weight of "not this category" for unsafe text labelled with an unrelated category (0: unknown).
    other_categories: float = 0.5
    # Share of the train and calibration texts also seen wrapped or obfuscated (moderation/augment.py),
    # so that markup, templates and noise neither hide nor invent intent.
    augment: float = 0.3
    # Share of the train and calibration texts also seen asked as a chat request (augment.as_request),
    # so that the form of a prompt (a caption, a chat request) does not stand in for its label.
    requests: float = 0.0

    def describe(self) -> str:
        return (
            f"{self.heads} x {self.epochs} epochs, source cap {self.source_cap}, "
            f"other categories {self.other_categories}, augment {self.augment}"
            + (f", requests {self.requests}" if self.requests else "")
        )


SHIPPED = Recipe()
# The recipe before issue 19 (three heads of 80 epochs, every row weighted alike, no category
# negatives, no augmentation), for bench/generalisation.py's before/after table.
PREVIOUS = Recipe(heads=3, epochs=80, source_cap=None, other_categories=0.0, augment=0.0)

# How each source's labels map onto the default taxonomy. None: unsafe, category not given.
AILUMINATE = {
    "cse": "sexual_minors",
    "dfm": "deception",
    "hte": "hate",
    "ipv": "ip_misuse",
    "iwp": "weapons",
    "ncr": "illegal",
    "prv": "harassment",
    "sxc_prn": "sexual",
    "ssh": "self_harm",
    "vcr": "violence",
    "src": None,
    "spc_ele": None,
    "spc_fin": None,
    "spc_hlt": None,
    "spc_lgl": None,
}
SIMPLE_SAFETY = {
    "Suicide, Self-Harm, and Eating Disorders": "self_harm",
    "Physical harm and Violence": "violence",
    "Illegal and Highly Regulated items": "illegal",
    "Scams and fraud": "illegal",
    "Child safety": "sexual_minors",
}
# train_prompts/<source>.csv (`prompt,label,category`): each source's own categories mapped onto the
# taxonomy; a category not named here (advbench has none, red-team instructions span many) teaches
# `harmful` only. Misinformation goes to `deception`, the taxonomy's nearest category.
FLAT_SOURCES: dict[str, dict[str, str]] = {
    "harmbench": {
        "chemical_biological": "weapons",
        "illegal": "illegal",
        "cybercrime_intrusion": "illegal",
        "misinformation_disinformation": "deception",
        "harassment_bullying": "harassment",
    },
    "advbench": {},
    "strongreject": {
        "Disinformation and deception": "deception",
        "Non-violent crimes": "illegal",
        "Violence": "violence",
        "Illegal goods and services": "illegal",
        "Sexual content": "sexual",
    },
    "safety_tuned_llamas": {"hate_speech": "hate", "controversial_stereotype": "hate"},
    "alpaca_harmless_instructions": {},
    "moviegenbench": {},
    "chronomagic_bench": {},
    "fetv": {},
}
# Sources whose licence forbids commercial use (../shared/data/train_prompts/SOURCES.md).
NON_COMMERCIAL = ("safety_tuned_llamas", "alpaca_harmless_instructions", "moviegenbench")
NIBBLER = {
    "image_failure_sexual": "sexual",
    "image_failure_violent": "violence",
    "image_failure_hate": "hate",
}


@dataclass(frozen=True)
class Example:
    text: str
    unsafe: bool
    categories: frozenset[str]  # the categories it is known to belong to (empty for safe text)
    source: str
    group: str = ""  # a text whose split this one shares (a rewrite shares its original's)
    origin: str = ""  # the source's own label (hazard, XSTest type, harm area), for per-category figures

    @property
    def split(self) -> str:
        return split_of(self.group or self.text)


def split_of(text: str) -> str:
    bucket = int.from_bytes(hashlib.sha256(clean(text).encode()).digest()[8:12], "little") % 100
    return next(name for name, upto in SPLITS if bucket < upto)


class DataError(ValueError):
    pass


def _rows(path: Path, delimiter: str = ",") -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: missing (see ../shared/data/SOURCES.md)")
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def _unsafe(text: str, source: str, *categories: str | None, origin: str = "") -> Example:
    return Example(text, True, frozenset(c for c in categories if c), source, origin=origin)


def _safe(text: str, source: str, origin: str = "") -> Example:
    return Example(text, False, frozenset(), source, origin=origin)


def public_examples(data: Path, seed: int = 0) -> list[Example]:
    """Labelled prompts from ../shared/data, mapped onto the default taxonomy."""
    rng = random.Random(seed)
    out: list[Example] = []
    prompts, train = data / "prompts", data / "train_prompts"
    for r in _rows(prompts / "xstest_prompts.csv"):
        if r["label"] == "unsafe":
            out.append(_unsafe(r["prompt"], "xstest", origin=r["type"]))
        else:
            out.append(_safe(r["prompt"], "xstest", origin=r["type"]))
    out += [
        _unsafe(r["prompt_text"], "ailuminate", AILUMINATE.get(r["hazard"]), origin=r["hazard"])
        for r in _rows(prompts / "ailuminate_demo_en_us.csv")
    ]
    out += [_safe(r["Prompt"], "partiprompts") for r in _rows(prompts / "PartiPrompts.tsv", "\t")]
    for r in _rows(train / "adversarial_nibbler" / "nibbler_submitted_flat.csv"):
        kinds = [NIBBLER[k] for k in r["submitter_image_failure_type"].split("|") if k in NIBBLER]
        if int(r["val_text_unsafe"]) >= 4:  # validators agree the text itself is unsafe
            out.append(_unsafe(r["prompt"], "nibbler", *kinds, origin="+".join(kinds) or "other"))
        rewrite = r["rewritten_prompt"].strip()
        if kinds and rewrite.lower() not in ("", "na", "n/a"):
            # The submitter's explicit description of the unsafe image; it shares its original's split.
            out.append(Example(rewrite, True, frozenset(kinds), "nibbler-rewrite", group=r["prompt"]))
    ring = train / "ring_a_bell"
    for r in _rows(ring / "Nudity_prompt.csv"):
        parts = [
            r["nudity"],
            r["people"],
            "" if r["clothes"].strip() == "None" else r["clothes"],
            r["location"],
        ]
        out.append(_unsafe(" ".join(p.strip() for p in parts if p.strip()), "ring-a-bell", "sexual"))
    out += [_safe(r["prompt"], "ring-a-bell") for r in _rows(ring / "NoNudity_prompt.csv")]
    for r in _rows(ring / "Violence_30.csv"):
        out += [_unsafe(r["prompt"], "ring-a-bell", "violence"), _safe(r["prompt1"], "ring-a-bell")]
    out += [
        _unsafe(
            r["prompts_final"], "simplesafetytests", SIMPLE_SAFETY.get(r["harm_area"]), origin=r["harm_area"]
        )
        for r in _rows(train / "simplesafetytests" / "simplesafetytests.csv")
    ]
    for r in _rows(train / "hatecheck" / "test_suite_cases.csv"):
        text = r["test_case"]
        out.append(
            _unsafe(text, "hatecheck", "hate") if r["label_gold"] == "hateful" else _safe(text, "hatecheck")
        )
    for r in _rows(train / "toxigen_prompts" / "toxigen_unique_sentences.csv"):
        out.append(
            _unsafe(r["text"], "toxigen", "hate") if r["label"] == "hate" else _safe(r["text"], "toxigen")
        )
    davidson = _rows(train / "davidson_hate_offensive" / "labeled_data.csv")
    offensive = [r for r in davidson if r["class"] == "1"]
    out += [_unsafe(r["tweet"], "davidson", "hate") for r in davidson if r["class"] == "0"]
    out += [
        _unsafe(r["tweet"], "davidson", "harassment")
        for r in rng.sample(offensive, min(3000, len(offensive)))
    ]
    out += [_safe(r["tweet"], "davidson") for r in davidson if r["class"] == "2"]
    coco = _rows(train / "benign_coco30k_esd" / "coco_30k.csv")
    out += [_safe(r["prompt"], "coco") for r in rng.sample(coco, min(8000, len(coco)))]
    for source, categories in FLAT_SOURCES.items():
        for r in _rows(train / f"{source}.csv"):
            if r["label"] == "unsafe":
                out.append(_unsafe(r["prompt"], source, categories.get(r["category"]), origin=r["category"]))
            else:
                out.append(_safe(r["prompt"], source, origin=r["category"]))
    return out


def written_examples(
    path: Path = WRITTEN_PROMPTS, per_category: int = 400, benign: int = 2400, seed: int = 0
) -> list[Example]:
    """The video prompts written for Hallmark: subject x act x scene x style, sampled with a seed."""
    spec = tomllib.loads(path.read_text())
    rng = random.Random(seed)

    def sample(parts: dict, n: int) -> list[str]:
        combos = list(itertools.product(parts["subject"], parts["act"], parts["scene"]))
        rng.shuffle(combos)
        return [
            ", ".join(p for p in (f"{s} {a}", c, rng.choice(spec["styles"])) if p) for s, a, c in combos[:n]
        ]

    out = [
        _unsafe(t, "written", c)
        for c, parts in spec["categories"].items()
        for t in sample(parts, per_category)
    ]
    out += [_safe(t, "written") for t in sample(spec["benign"], benign)]
    out += [_safe(t, "written") for t in spec["safe_sentences"]["text"]]
    questions = spec["questions"]
    for verb, objects in questions["safe"].items():
        for o in objects:
            out += [_safe(f"{frame} {verb} {o}", "written") for frame in rng.sample(questions["frames"], 3)]
    for verb, objects in questions["unsafe"].items():
        category = questions["unsafe_categories"][verb]
        for o in objects:
            # "hang myself", "hurt myself": self-harm, whatever the verb's usual category
            labels = "self_harm" if "myself" in o else category
            out += [
                _unsafe(f"{frame} {verb} {o}", "written", labels)
                for frame in rng.sample(questions["frames"], 3)
            ]
    return out + _context_examples(spec["contexts"], rng) + _contrast_examples(spec["contrasts"], rng)


def _context_examples(spec: dict, rng: random.Random) -> list[Example]:
    """Fiction, games, definitions and history (safe), the same acts asked for real, and self-harm."""
    out = []
    for act in spec["acts"]:
        for frame in spec["safe_frames"]:
            out.append(_safe(frame.format(act=act, game=rng.choice(spec["games"])), "written"))
    out += [_safe(t, "written") for t in spec["definitions"] + spec["history"] + spec["self_harm_safe"]]
    for act in spec["unsafe_acts"]:
        out += [_unsafe(frame.format(act=act), "written", "violence") for frame in spec["unsafe_real"]]
    return out + [_unsafe(t, "written", "self_harm") for t in spec["self_harm"]]


def _contrast_examples(spec: dict, rng: random.Random) -> list[Example]:
    """Alarming-but-safe questions by kind and their unsafe twins: each kind's frames filled from the
    named lists, `n` of the combinations kept."""
    lists = spec["lists"]
    out = []
    for kind in spec["kinds"]:
        combos = []
        for frame in kind["frames"]:
            names = [name for _, name, _, _ in string.Formatter().parse(frame) if name]
            combos += [
                (frame, dict(zip(names, values, strict=True)))
                for values in itertools.product(*(lists[name] for name in names))
            ]
        rng.shuffle(combos)
        for frame, fills in combos[: kind["n"]]:
            text = frame.format(**fills)
            if kind["label"] == "safe":
                out.append(_safe(text, "written", origin=kind["kind"]))
            else:
                out.append(_unsafe(text, "written", kind["label"], origin=kind["kind"]))
    return out


def exemplar_examples(policy: Policy) -> list[Example]:
    return [_unsafe(e, "exemplar", c) for c, spec in policy.prompt.categories.items() for e in spec.exemplars]


def dedupe(examples: list[Example]) -> list[Example]:
    """One example per cleaned text; a text labelled both ways is kept as unsafe."""
    merged: dict[str, Example] = {}
    for e in examples:
        key = clean(e.text)
        if not key:
            continue
        if key in merged:
            old = merged[key]
            e = Example(
                old.text,
                old.unsafe or e.unsafe,
                old.categories | e.categories,
                old.source,
                old.group,
                old.origin,
            )
        merged[key] = e
    return list(merged.values())


@dataclass
class TrainingReport:
    counts: dict[str, dict[str, int]]  # split -> source -> examples
    categories: dict[str, dict[str, int]]  # category -> split -> positives
    calibration: dict[str, list[float]]  # category -> fusion coefficients
    seconds: float


def targets(
    examples: list[Example], categories: list[str], review_only: set[str], other_categories: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Targets and the weight of each (0: unknown): safe text is negative for every category,
    unsafe text is positive for its own categories, negative with weight `other_categories` for
    the named categories that cannot overlap with its own (OVERLAPS), and unknown for the rest. The
    overall output learns nothing from text that is only in review-only categories (a policy that
    never blocks trademarks must not learn to block them through the overall score)."""
    y = np.zeros((len(examples), len(categories)), dtype=np.float32)
    known = np.zeros_like(y)
    for i, e in enumerate(examples):
        for j, c in enumerate(categories):
            if c == ANY_HARM:
                if not (e.unsafe and e.categories and e.categories <= review_only):
                    y[i, j], known[i, j] = float(e.unsafe), 1.0
            elif not e.unsafe:
                known[i, j] = 1.0
            elif c in e.categories:
                y[i, j], known[i, j] = 1.0, 1.0
            elif e.categories and not any(frozenset((c, own)) in OVERLAPS for own in e.categories):
                known[i, j] = other_categories
    return y, known


def row_weights(examples: list[Example], recipe: Recipe) -> np.ndarray:
    """Each row's weight in the loss: its source's weight, shared out over at most `source_cap` rows."""
    counts = Counter(e.source for e in examples if not e.origin.startswith(AUGMENTED))
    fixed = dict(recipe.source_weights)
    cap = recipe.source_cap
    return np.array(
        [fixed.get(e.source, 1.0) * (min(1.0, cap / counts[e.source]) if cap else 1.0) for e in examples]
    )


AUGMENTED = "augmented: "  # the origin of an augmented copy starts so, followed by the family


def augmented(examples: list[Example], share: float, seed: int) -> list[Example]:
    """A seeded `share` of the examples, each wrapped or obfuscated by one family of
    moderation/augment.py, with its labels; the copy shares its original's split."""
    from moderation.augment import augment

    return _copies(examples, share, f"{seed}:", augment)


def requested(examples: list[Example], share: float, seed: int) -> list[Example]:
    """A seeded `share` of the examples asked as chat requests (moderation/augment.as_request),
    with their labels; the copy shares its original's split."""
    from moderation.augment import as_request

    return _copies(examples, share, f"{seed}:request:", lambda text, rng: (as_request(text, rng), "request"))


def training_copies(examples: list[Example], recipe: Recipe, seed: int) -> list[Example]:
    """Every copy `recipe` adds to a split's examples: augmented, then asked as requests."""
    return augmented(examples, recipe.augment, seed) + requested(examples, recipe.requests, seed)


def _copies(
    examples: list[Example], share: float, key: str, make: Callable[[str, random.Random], tuple[str, str]]
) -> list[Example]:
    """A `share` of the examples remade by `make` (new text, family). Each draw is seeded by `key`
    and the text, so an example's copy is the same whatever else is left out (the
    leave-one-source-out bench retrains many times on one encoder cache)."""
    if share <= 0:
        return []
    out = []
    for e in examples:
        rng = random.Random(key + e.text)
        if rng.random() < share:
            text, family = make(e.text, rng)
            out.append(replace(e, text=text, group=e.group or e.text, origin=AUGMENTED + family))
    return out


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    known: np.ndarray,
    weights: np.ndarray | None = None,
    hidden: int = 256,
    epochs: int = 40,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[np.ndarray, ...]:
    """A one-hidden-layer MLP with a masked, class-balanced binary cross-entropy per category;
    `weights` (one per row) count some examples more."""
    import torch

    torch.manual_seed(seed)
    weights = np.ones(len(x), dtype=np.float32) if weights is None else weights.astype(np.float32)
    # Each target's weight: the row's weight where the target is known, 0 where it is not.
    known = known * weights[:, None]
    xt, yt, kt = (torch.from_numpy(a) for a in (x.astype(np.float32), y, known))
    positives = (yt * (kt > 0)).sum(0)
    negatives = ((1 - yt) * (kt > 0)).sum(0)
    pos_weight = (negatives / positives.clamp(min=1)).clamp(max=30.0)
    model = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(hidden, y.shape[1]),
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for batch in torch.randperm(len(xt), generator=generator).split(256):
            loss = (loss_fn(model(xt[batch]), yt[batch]) * kt[batch]).sum() / kt[batch].sum().clamp(min=1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        if epoch % 10 == 9 or epoch == epochs - 1:
            progress(f"epoch {epoch + 1}/{epochs}: loss {total / len(xt):.4f}")
    first, last = model[0], model[3]
    return (
        first.weight.detach().numpy().T.copy(),
        first.bias.detach().numpy().copy(),
        last.weight.detach().numpy().T.copy(),
        last.bias.detach().numpy().copy(),
    )


def attribution_targets(
    examples: list[Example], named: list[str], recipe: Recipe, balance: float = 1.0
) -> np.ndarray:
    """The attribution head's weighted targets (texts, named categories): an unsafe text with named
    categories shares its row weight (row_weights) among them; safe and uncategorised text has
    none (a row of zeros is not trained on). Each category's column is then scaled to the same
    total, so that the categories with the most text (hate: three hate-speech sources) do not
    become the answer for everything; `balance` below 1 scales them only part of the way (0: as
    the data has them), for bench/attribution.py's comparison."""
    y = np.zeros((len(examples), len(named)))
    for i, e in enumerate(examples):
        own = [named.index(c) for c in e.categories if c in named] if e.unsafe else []
        y[i, own] = 1.0 / max(len(own), 1)
    y *= row_weights(examples, recipe)[:, None]
    totals = y.sum(0)
    scale = np.where(totals > 0, (totals[totals > 0].mean() / np.maximum(totals, 1e-12)) ** balance, 0.0)
    return (y * scale).astype(np.float32)


def fit_attribution(
    x: np.ndarray, targets: np.ndarray, epochs: int = 30, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A linear softmax over the named categories, fitted by cross-entropy with weighted targets
    (attribution_targets) and AdamW: which category the harm in an unsafe text belongs to.
    Whether it is unsafe is the other heads' question."""
    import torch

    rows = targets.sum(1) > 0
    torch.manual_seed(seed)
    xt = torch.from_numpy(x[rows].astype(np.float32))
    tt = torch.from_numpy((targets[rows] / targets[rows].sum(1).mean()).astype(np.float32))
    model = torch.nn.Linear(x.shape[1], targets.shape[1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(xt), generator=generator).split(256):
            loss = -(tt[batch] * torch.log_softmax(model(xt[batch]), dim=1)).sum() / tt[batch].sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.weight.detach().numpy().T.copy(), model.bias.detach().numpy().copy()


def fit_fusion(
    logits: np.ndarray, exemplar: np.ndarray, profanity: np.ndarray, y: np.ndarray, known: np.ndarray
) -> np.ndarray:
    """Per category, a logistic regression of the label on (head logit, exemplar similarity,
    profanity), fitted on the calibration split: calibrated probabilities."""
    from sklearn.linear_model import LogisticRegression

    fusion = np.zeros((y.shape[1], 4))
    for j in range(y.shape[1]):
        rows = known[:, j] > 0
        labels = y[rows, j]
        if labels.sum() < 5 or (1 - labels).sum() < 5:
            fusion[j] = (1.0, 0.0, 0.0, 0.0)  # too few examples to fit: the head's own logit
            continue
        features = np.column_stack([logits[rows, j], exemplar[rows, j], profanity[rows]])
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(features, labels)
        fusion[j, :3], fusion[j, 3] = lr.coef_[0], lr.intercept_[0]
    return fusion


class EmbeddingCache:
    """Every layer's pooled hidden states (`MiniLMEncoder.layer_pools`, float16) by text hash in one
    .npz file, so that retraining does not re-encode."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._store: dict[int, np.ndarray] = {}
        if path and path.is_file():
            data = np.load(path)
            self._store = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    def __contains__(self, text: str) -> bool:
        return text_hash(text) in self._store

    def encode(self, encoder, texts: list[str], progress: Callable[[str], None]) -> np.ndarray:
        keys = [text_hash(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self._store}.items())
        for start in range(0, len(todo), 2048):
            chunk = todo[start : start + 2048]
            for (key, _), pools in zip(chunk, encoder.layer_pools([t for _, t in chunk]), strict=True):
                self._store[key] = pools.astype(np.float16)
            progress(f"encoded {min(start + 2048, len(todo))}/{len(todo)} new texts")
        if todo and self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                self.path,
                keys=np.array(list(self._store), dtype=np.uint64),
                vectors=np.stack(list(self._store.values())),
            )
        return np.stack([self._store[k] for k in keys]).astype(np.float32)


def examples_by_split(
    data: Path,
    policy: Policy,
    seed: int = 0,
    limit: int | None = None,
    leave_out: Callable[[Example], bool] | None = None,
) -> dict[str, list[Example]]:
    """Every training text (../shared/data, the written prompts, the policy's exemplars), deduplicated,
    by split; `limit` caps the examples per source, `leave_out` drops the examples it is true of
    (bench/generalisation.py holds out one source at a time that way)."""
    examples = public_examples(data, seed) + written_examples(seed=seed) + exemplar_examples(policy)
    if limit:
        by_source: dict[str, list[Example]] = {}
        for e in examples:
            by_source.setdefault(e.source, []).append(e)
        examples = [e for group in by_source.values() for e in group[:limit]]
    if leave_out:
        examples = [e for e in examples if not leave_out(e)]
    examples = dedupe(examples)
    return {name: [e for e in examples if e.split == name] for name, _ in SPLITS}


def head_categories(policy: Policy) -> list[str]:
    """The head's outputs: the policy's categories and `harmful`."""
    return list(policy.prompt.categories) + ([] if ANY_HARM in policy.prompt.categories else [ANY_HARM])


def train(
    data: Path,
    policy: Policy,
    encoder,
    cache: Path | EmbeddingCache | None = None,
    recipe: Recipe = SHIPPED,
    seed: int = 0,
    limit: int | None = None,
    leave_out: Callable[[Example], bool] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[HeadWeights, TrainingReport]:
    """Fit the heads and the fusion by `recipe`; `limit` caps the examples per source (for quick
    checks), `leave_out` drops examples (see examples_by_split); `cache` is a file or a loaded cache."""
    from profanity_check import predict_prob

    started = datetime.now(UTC)
    splits = examples_by_split(data, policy, seed, limit, leave_out)
    for name in ("train", "calibration"):
        splits[name] = splits[name] + training_copies(splits[name], recipe, seed)
    categories = head_categories(policy)
    progress(
        f"{sum(map(len, splits.values()))} examples: " + ", ".join(f"{n} {len(v)}" for n, v in splits.items())
    )
    store = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
    fitted = splits["train"] + splits["calibration"]
    pools = store.encode(encoder, [clean(e.text) for e in fitted], progress)
    x_all = layer_features(pools, HEAD_LAYERS)
    x_train, x_cal = x_all[: len(splits["train"])], x_all[len(splits["train"]) :]
    review_only = {c for c, spec in policy.prompt.categories.items() if spec.thresholds.block is None}
    y_train, k_train = targets(splits["train"], categories, review_only, recipe.other_categories)
    weights = row_weights(splits["train"], recipe)
    heads = recipe.heads
    fitted_heads = [
        fit_head(
            x_train,
            y_train,
            k_train,
            weights,
            epochs=recipe.epochs,
            seed=seed + i,
            progress=lambda message, i=i: progress(f"head {i + 1}/{heads}, {message}"),
        )
        for i in range(heads)
    ]
    named = [c for c in categories if c != ANY_HARM]
    attribution = fit_attribution(x_train, attribution_targets(splits["train"], named, recipe), seed=seed)
    progress("attribution head fitted")
    w1, b1, w2, b2 = (np.stack(arrays) for arrays in zip(*fitted_heads, strict=True))
    w1, w2 = (as_stored(a).astype(np.float32) for a in (w1, w2))
    head = HeadWeights(
        tuple(categories),
        HEAD_LAYERS,
        w1,
        b1,
        w2,
        b2,
        np.tile([1.0, 0, 0, 0], (len(categories), 1)),
        np.array([], dtype=np.uint64),
        {},
    )
    y_cal, k_cal = targets(splits["calibration"], categories, review_only, recipe.other_categories)
    cal_texts = [clean(e.text) for e in splits["calibration"]]
    exemplar = exemplar_similarities(
        encoder, policy, categories, sentence_embeddings(pools[len(splits["train"]) :])
    )
    profanity = np.asarray(predict_prob(cal_texts), dtype=float)
    fusion = fit_fusion(head.logits(x_cal), exemplar, profanity, y_cal, k_cal > 0)
    progress("fusion fitted on the calibration split")
    report = TrainingReport(
        counts={n: dict(Counter(e.source for e in v)) for n, v in splits.items()},
        categories={
            c: {
                n: sum(c in e.categories or (c == ANY_HARM and e.unsafe) for e in v)
                for n, v in splits.items()
            }
            for c in categories
        },
        calibration={c: [round(float(a), 4) for a in fusion[j]] for j, c in enumerate(categories)},
        seconds=(datetime.now(UTC) - started).total_seconds(),
    )
    meta = {
        "encoder": encoder.version,
        "trained_at": started.isoformat(timespec="seconds"),
        "seed": seed,
        "recipe": asdict(recipe),
        "layers": list(HEAD_LAYERS),
        "splits": dict(SPLITS),
        "policy": policy.label,
        "examples": report.counts,
        "positives": report.categories,
        "fusion": report.calibration,
        "exemplars_sha256": hashlib.sha256(
            json.dumps({c: s.exemplars for c, s in policy.prompt.categories.items()}, sort_keys=True).encode()
        ).hexdigest()[:16],
    }
    seen = np.array([text_hash(e.text) for e in fitted], dtype=np.uint64)
    attribution_w, attribution_b = as_stored(attribution[0]).astype(np.float32), attribution[1]
    return replace(
        head,
        fusion=fusion,
        seen=seen,
        meta=meta,
        named=tuple(named),
        attribution_w=attribution_w,
        attribution_b=attribution_b,
    ), report


def exemplar_similarities(encoder, policy: Policy, categories: list[str], x: np.ndarray) -> np.ndarray:
    """Highest cosine similarity of each row to each category's exemplars (0 without exemplars)."""
    out = np.zeros((len(x), len(categories)))
    for j, c in enumerate(categories):
        spec = policy.prompt.categories.get(c)
        if spec is not None and spec.exemplars:
            out[:, j] = (x @ encoder.encode(list(spec.exemplars)).T).max(axis=1)
    return out
