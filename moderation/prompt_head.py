"""Hallmark's prompt classifier: a trained head on all-MiniLM-L6-v2 embeddings, fused with the
policy's exemplar phrases and alt-profanity-check into one calibrated score per category.

Per category c and per view v of the prompt (see moderation.deobfuscate):

    score_c = max over v of sigmoid(a_c * head_logit_c(v) + b_c * exemplar_sim_c(v) + d_c * profanity(v) + e_c)

The head reads the mean-pooled hidden states of several MiniLM layers, each normalised and
concatenated (layers 1-6: 6 x 384 -> 256 -> categories): the middle layers keep the wording that
the last layer's sentence embedding smooths over ("kill a Python process" and "kill a person" are
close in the last layer, apart in the middle ones). head_logit is the mean of a few such heads
trained from different seeds: one head's decisions near the threshold change with the seed, the
mean's half as often. The heads and the fusion coefficients (a, b, d, e) are fitted by
`hallmark train prompt-classifier` (moderation/train.py); the fusion is a logistic regression
fitted on a calibration split, so a score is a probability and one threshold means the same in
every category. The weights file also holds the hashes of every text it was fitted on, so that
evaluation can leave those out.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from moderation.deobfuscate import Reading, clean, read_prompt
from moderation.verdict import ANY_HARM, Verdict, decide
from policy import Action, PromptCategory, Thresholds

STAGE = "prompt"
SHIPPED_WEIGHTS = Path(__file__).parent / "weights" / "prompt_head.npz"


class HeadError(ValueError):
    """A weights file that cannot be used with this policy."""


def text_hash(text: str) -> int:
    """A 64-bit hash of the cleaned text: how a weights file remembers what it was fitted on."""
    return int.from_bytes(hashlib.sha256(clean(text).encode()).digest()[:8], "little")


def layer_features(pools: np.ndarray, layers: tuple[int, ...]) -> np.ndarray:
    """The head's input from `MiniLMEncoder.layer_pools`: the chosen layers, each unit-norm, side by side."""
    chosen = pools[:, list(layers)]
    chosen = chosen / np.maximum(np.linalg.norm(chosen, axis=-1, keepdims=True), 1e-12)
    return chosen.reshape(len(pools), -1)


def sentence_embeddings(pools: np.ndarray) -> np.ndarray:
    """The last layer's pool, unit-norm: the sentence embedding `MiniLMEncoder.encode` returns."""
    return layer_features(pools, (-1,))


def as_stored(matrix: np.ndarray) -> np.ndarray:
    """A head's weight matrix as the weights file keeps it: float16, half the size. Training fits
    the fusion to the rounded matrices, so the file holds exactly what was calibrated."""
    return matrix.astype(np.float16)


@dataclass(frozen=True)
class HeadWeights:
    categories: tuple[str, ...]
    layers: tuple[int, ...]  # which of the encoder's hidden states the head reads (0: token embeddings)
    w1: np.ndarray  # (heads, 384 * len(layers), hidden)
    b1: np.ndarray  # (heads, hidden)
    w2: np.ndarray  # (heads, hidden, categories)
    b2: np.ndarray  # (heads, categories)
    fusion: np.ndarray  # (categories, 4): head logit, exemplar similarity, profanity, bias
    seen: np.ndarray  # uint64 hashes of the training and calibration texts
    meta: dict  # encoder, data, metrics: what the model card reports
    version: str = ""
    # The attribution head: a softmax over the named categories, `named`, that says which one the
    # harm in an unsafe text belongs to (None in files written before it existed).
    named: tuple[str, ...] = ()
    attribution_w: np.ndarray | None = None  # (384 * len(layers), named)
    attribution_b: np.ndarray | None = None  # (named,)

    def logits(self, features: np.ndarray) -> np.ndarray:
        # In torch, on the encoder's threads: at this width numpy's BLAS starts a thread pool of its
        # own, and the two pools fighting over the cores doubled the time per prompt (measured: 20 -> 45 ms).
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            w1, b1, w2, b2 = (torch.from_numpy(a) for a in (self.w1, self.b1, self.w2, self.b2))
            hidden = torch.relu(x @ w1 + b1[:, None])  # (heads, texts, hidden)
            return (hidden @ w2 + b2[:, None]).mean(0).numpy()

    def attribute(self, features: np.ndarray, categories: list[str]) -> np.ndarray | None:
        """Which of `categories` (named ones the head knows) the harm in each text belongs to:
        (texts, categories) probabilities, each row summing to 1; None without an attribution head."""
        if self.attribution_w is None or not categories:
            return None
        import torch

        index = [self.named.index(c) for c in categories]
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            w, b = torch.from_numpy(self.attribution_w[:, index]), torch.from_numpy(self.attribution_b[index])
            return torch.softmax(x @ w + b, dim=1).numpy()

    def fuse(
        self, logits: np.ndarray, exemplar: np.ndarray, profanity: np.ndarray, index: list[int] | None = None
    ) -> np.ndarray:
        """Calibrated scores (texts, categories[index]) from the head's logits and the other signals."""
        f = self.fusion if index is None else self.fusion[index]
        z = f[:, 0] * logits + f[:, 1] * exemplar + f[:, 2] * profanity[:, None] + f[:, 3]
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))

    def has_seen(self, text: str) -> bool:
        return bool(np.isin(np.uint64(text_hash(text)), self.seen))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            w1=as_stored(self.w1),
            b1=self.b1.astype(np.float32),
            w2=as_stored(self.w2),
            b2=self.b2.astype(np.float32),
            fusion=self.fusion.astype(np.float64),
            seen=np.unique(self.seen.astype(np.uint64)),
            categories=np.array(self.categories),
            layers=np.array(self.layers, dtype=np.int64),
            meta=np.array(json.dumps(self.meta, sort_keys=True)),
            **(
                {}
                if self.attribution_w is None
                else dict(
                    named=np.array(self.named),
                    attribution_w=as_stored(self.attribution_w),
                    attribution_b=self.attribution_b.astype(np.float32),
                )
            ),
        )
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path | None = None) -> HeadWeights:
        path = Path(path) if path else SHIPPED_WEIGHTS
        try:
            raw = path.read_bytes()
            data = np.load(io.BytesIO(raw), allow_pickle=False)
            return cls(
                categories=tuple(str(c) for c in data["categories"]),
                layers=tuple(int(i) for i in data["layers"]),
                **{
                    name: _heads(data[name], dims)
                    for name, dims in (("w1", 3), ("b1", 2), ("w2", 3), ("b2", 2))
                },
                fusion=data["fusion"],
                seen=data["seen"],
                meta=json.loads(str(data["meta"])),
                version="sha256:" + hashlib.sha256(raw).hexdigest()[:12],
                **(
                    {}
                    if "attribution_w" not in data.files
                    else dict(
                        named=tuple(str(c) for c in data["named"]),
                        attribution_w=data["attribution_w"].astype(np.float32),
                        attribution_b=data["attribution_b"].astype(np.float32),
                    )
                ),
            )
        except (OSError, KeyError, ValueError) as exc:
            raise HeadError(f"{path}: not a prompt classifier weights file: {exc}") from exc


def _heads(array: np.ndarray, dims: int) -> np.ndarray:
    """One of a head's arrays as float32 with the heads axis first (files written before the
    heads were several have a single head and no such axis)."""
    array = array.astype(np.float32)
    return array[None] if array.ndim == dims - 1 else array


ATTRIBUTED = "most likely category: "  # how the overall output's detail names a category
SHARE = " of the harm attributed to it"  # how a named category's detail gives its share


def attributed_category(verdict: Verdict) -> str | None:
    """The named category an overall (`harmful`) verdict attributes the harm to, read from its
    detail; None for other verdicts and for weights without an attribution head."""
    match = (
        re.search(re.escape(ATTRIBUTED) + r"(\w+)", verdict.detail) if verdict.category == ANY_HARM else None
    )
    return match.group(1) if match else None


def attributed_share(verdict: Verdict) -> float | None:
    """The share of the harm attributed to a named category's verdict, read from its detail."""
    match = re.search(r"(\d\.\d+)" + re.escape(SHARE), verdict.detail)
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class Scores:
    """The fused classifier on a list of texts."""

    scores: np.ndarray  # (texts, policy categories): calibrated probabilities
    nearest: np.ndarray  # (texts, policy categories): index of the nearest exemplar, -1 without exemplars
    shares: (
        np.ndarray | None
    )  # (texts, named categories): the attribution head's softmax, if the weights have one

    def rows(self, index: list[int]) -> Scores:
        return Scores(
            self.scores[index], self.nearest[index], None if self.shares is None else self.shares[index]
        )


class PromptModel:
    """The fused, calibrated prompt classifier: one verdict per policy category."""

    name = "hallmark-prompt"

    def __init__(
        self,
        encoder,
        weights: HeadWeights,
        categories: dict[str, PromptCategory],
        evasion_action: Action = Action.flag,
        second_category_share: float = 0.0,
    ) -> None:
        from profanity_check import predict_prob

        missing = [c for c in categories if c not in weights.categories]
        if missing:
            raise HeadError(
                f"the policy's categories {missing} have no trained output in the prompt classifier "
                f"({', '.join(weights.categories)}); retrain it: "
                "hallmark train prompt-classifier --policy FILE"
            )
        states, width = encoder.layer_shape
        if max(weights.layers) >= states or len(weights.layers) * width != weights.w1.shape[1]:
            raise HeadError(
                f"the prompt classifier reads layers {list(weights.layers)} of a "
                f"{weights.w1.shape[1] // len(weights.layers)}-wide encoder; {encoder.version} has {states - 1} layers of width {width}: "
                "retrain it on this encoder (hallmark train prompt-classifier)"
            )
        self._encoder = encoder
        self._weights = weights
        self._categories = categories
        self._index = [weights.categories.index(c) for c in categories]
        self._evasion_action = evasion_action
        self._second_share = second_category_share
        # The named categories the attribution head shares the harm among: all of the policy's, or
        # none when the weights have no head or were trained for other categories.
        named = [c for c in categories if c != ANY_HARM]
        self._attributed = (
            named if weights.attribution_w is not None and set(named) <= set(weights.named) else []
        )
        self._profanity = predict_prob
        self.version = f"{weights.version} on {encoder.version}"
        self._exemplars = {
            c: encoder.encode(list(spec.exemplars)) for c, spec in categories.items() if spec.exemplars
        }

    @property
    def encoder(self):
        return self._encoder

    @property
    def weights(self) -> HeadWeights:
        return self._weights

    def scores(self, texts: list[str]) -> Scores:
        """Calibrated scores of every text for the policy's categories (see `Scores`)."""
        return self.scores_of_pools(texts, self._encoder.layer_pools(texts))

    def scores_of_pools(self, texts: list[str], pools: np.ndarray) -> Scores:
        """`scores` from the texts' encoder layer pools, computed already (bench/generalisation.py
        scores cached pools this way, through the same fusion)."""
        embeddings = sentence_embeddings(pools)
        features = layer_features(pools, self._weights.layers)
        logits = self._weights.logits(features)[:, self._index]
        exemplar = np.zeros_like(logits)
        nearest = np.full(logits.shape, -1)
        for j, category in enumerate(self._categories):
            if category in self._exemplars:
                sims = embeddings @ self._exemplars[category].T
                exemplar[:, j], nearest[:, j] = sims.max(axis=1), sims.argmax(axis=1)
        profanity = np.asarray(self._profanity(texts), dtype=float)
        shares = self._weights.attribute(features, self._attributed) if self._attributed else None
        return Scores(self._weights.fuse(logits, exemplar, profanity, self._index), nearest, shares)

    def classify(self, prompt: str) -> list[Verdict]:
        return self.classify_many([prompt])[0]

    def classify_many(self, prompts: list[str]) -> list[list[Verdict]]:
        """`classify` for many prompts at once: every view of every prompt goes through the encoder
        in one batched pass, which is several times faster per prompt than one prompt at a time."""
        readings = [read_prompt(p) for p in prompts]
        texts = list(dict.fromkeys(t for r in readings for t in r.texts))
        scored = self.scores(texts)
        row = {t: i for i, t in enumerate(texts)}
        return [self._verdicts(reading, scored.rows([row[t] for t in reading.texts])) for reading in readings]

    def _verdicts(self, reading: Reading, scored: Scores) -> list[Verdict]:
        """One verdict per category, each on the view that scores it highest. Where the weights have
        an attribution head, the overall output names the category the harm most likely belongs
        to, and a named category that blocks beside another one blocks only if at least the
        policy's `second_category_share` of its view's harm is attributed to it (else it flags)."""
        names = list(self._categories)
        named = [j for j, c in enumerate(names) if c != ANY_HARM]
        blockable = [
            k for k, j in enumerate(named) if self._categories[names[j]].thresholds.block is not None
        ]
        views = [int(np.argmax(scored.scores[:, j])) for j in range(len(names))]
        share = {}  # named category -> the share of the harm attributed to it, on its own view
        if scored.shares is not None:
            share = {names[j]: float(scored.shares[views[j], k]) for k, j in enumerate(named)}
        verdicts = []
        for j, (category, spec) in enumerate(self._categories.items()):
            v = views[j]
            detail = f"view: {reading.views[v].how}"
            if category == ANY_HARM and blockable and scored.shares is not None:
                # among the categories the policy can block: the overall output's block is theirs
                k = max(blockable, key=lambda k: scored.shares[v, k])
                detail += f"; {ATTRIBUTED}{names[named[k]]} ({scored.shares[v, k]:.2f} of the harm)"
            elif category == ANY_HARM and named:
                top = max(named, key=lambda k: scored.scores[v, k])
                detail += f"; closest category: {names[top]} ({scored.scores[v, top]:.2f})"
            elif category in share:
                detail += f"; {share[category]:.2f}{SHARE}"
            if scored.nearest[v, j] >= 0:
                detail += f"; nearest exemplar: '{spec.exemplars[scored.nearest[v, j]]}'"
            score = float(scored.scores[v, j])
            verdicts.append(decide(STAGE, self.name, self.version, category, score, spec.thresholds, detail))
        verdicts = self._second_categories(verdicts, share)
        verdicts.extend(self._evasion_verdicts(reading))
        return verdicts

    def _second_categories(self, verdicts: list[Verdict], share: dict[str, float]) -> list[Verdict]:
        """Blocking named categories besides the one with the largest share of the harm are
        lowered to flag where their share is under the policy's floor."""
        blocking = [v.category for v in verdicts if v.action is Action.block and v.category in share]
        if len(blocking) < 2 or self._second_share <= 0:
            return verdicts
        first = max(blocking, key=share.get)
        return [
            replace(
                v,
                action=Action.flag,
                detail=v.detail + f"; flagged, not blocked: under the policy's "
                f"second_category_share {self._second_share:g}, and {first} has more of the harm",
            )
            if v.category in blocking and v.category != first and share[v.category] < self._second_share
            else v
            for v in verdicts
        ]

    def _evasion_verdicts(self, reading: Reading) -> list[Verdict]:
        if self._evasion_action is Action.allow:
            return []
        thresholds = Thresholds(**{self._evasion_action.value: 1.0})
        found = 1.0 if reading.evasion else 0.0
        detail = ", ".join(reading.evasion) if reading.evasion else "none found"
        return [decide(STAGE, "deobfuscation", "1", "evasion", found, thresholds, detail)]
