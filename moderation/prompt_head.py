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
from dataclasses import dataclass
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

    def logits(self, features: np.ndarray) -> np.ndarray:
        # In torch, on the encoder's threads: at this width numpy's BLAS starts a thread pool of its
        # own, and the two pools fighting over the cores doubled the time per prompt (measured: 20 -> 45 ms).
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            w1, b1, w2, b2 = (torch.from_numpy(a) for a in (self.w1, self.b1, self.w2, self.b2))
            hidden = torch.relu(x @ w1 + b1[:, None])  # (heads, texts, hidden)
            return (hidden @ w2 + b2[:, None]).mean(0).numpy()

    def fuse(self, logits: np.ndarray, exemplar: np.ndarray, profanity: np.ndarray,
             index: list[int] | None = None) -> np.ndarray:  # fmt: skip
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
            buffer, w1=as_stored(self.w1), b1=self.b1.astype(np.float32),
            w2=as_stored(self.w2), b2=self.b2.astype(np.float32),
            fusion=self.fusion.astype(np.float64), seen=np.unique(self.seen.astype(np.uint64)),
            categories=np.array(self.categories), layers=np.array(self.layers, dtype=np.int64), meta=np.array(json.dumps(self.meta, sort_keys=True)),
        )  # fmt: skip
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
                **{name: _heads(data[name], dims) for name, dims in (("w1", 3), ("b1", 2), ("w2", 3), ("b2", 2))},
                fusion=data["fusion"],
                seen=data["seen"], meta=json.loads(str(data["meta"])),
                version="sha256:" + hashlib.sha256(raw).hexdigest()[:12],
            )  # fmt: skip
        except (OSError, KeyError, ValueError) as exc:
            raise HeadError(f"{path}: not a prompt classifier weights file: {exc}") from exc


def _heads(array: np.ndarray, dims: int) -> np.ndarray:
    """One of a head's arrays as float32 with the heads axis first (files written before the
    heads were several have a single head and no such axis)."""
    array = array.astype(np.float32)
    return array[None] if array.ndim == dims - 1 else array


class PromptModel:
    """The fused, calibrated prompt classifier: one verdict per policy category."""

    name = "hallmark-prompt"

    def __init__(self, encoder, weights: HeadWeights, categories: dict[str, PromptCategory],
                 evasion_action: Action = Action.flag) -> None:  # fmt: skip
        from profanity_check import predict_prob

        missing = [c for c in categories if c not in weights.categories]
        if missing:
            raise HeadError(
                f"the policy's categories {missing} have no trained output in the prompt classifier "
                f"({', '.join(weights.categories)}); retrain it: hallmark train prompt-classifier --policy FILE"
            )
        states, width = encoder.layer_shape
        if max(weights.layers) >= states or len(weights.layers) * width != weights.w1.shape[1]:
            raise HeadError(
                f"the prompt classifier reads layers {list(weights.layers)} of a {weights.w1.shape[1] // len(weights.layers)}"
                f"-wide encoder; {encoder.version} has {states - 1} layers of width {width}: "
                "retrain it on this encoder (hallmark train prompt-classifier)"
            )
        self._encoder = encoder
        self._weights = weights
        self._categories = categories
        self._index = [weights.categories.index(c) for c in categories]
        self._evasion_action = evasion_action
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

    def scores(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated scores (texts, policy categories), and the index of each category's nearest exemplar."""
        return self.scores_of_pools(texts, self._encoder.layer_pools(texts))

    def scores_of_pools(self, texts: list[str], pools: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`scores` from the texts' encoder layer pools, computed already (bench/generalisation.py
        scores cached pools this way, through the same fusion)."""
        embeddings = sentence_embeddings(pools)
        logits = self._weights.logits(layer_features(pools, self._weights.layers))[:, self._index]
        exemplar = np.zeros_like(logits)
        nearest = np.full(logits.shape, -1)
        for j, category in enumerate(self._categories):
            if category in self._exemplars:
                sims = embeddings @ self._exemplars[category].T
                exemplar[:, j], nearest[:, j] = sims.max(axis=1), sims.argmax(axis=1)
        profanity = np.asarray(self._profanity(texts), dtype=float)
        return self._weights.fuse(logits, exemplar, profanity, self._index), nearest

    def classify(self, prompt: str) -> list[Verdict]:
        return self.classify_many([prompt])[0]

    def classify_many(self, prompts: list[str]) -> list[list[Verdict]]:
        """`classify` for many prompts at once: every view of every prompt goes through the encoder
        in one batched pass, which is several times faster per prompt than one prompt at a time."""
        readings = [read_prompt(p) for p in prompts]
        texts = list(dict.fromkeys(t for r in readings for t in r.texts))
        scores, nearest = self.scores(texts)
        row = {t: i for i, t in enumerate(texts)}
        out = []
        for reading in readings:
            rows = [row[t] for t in reading.texts]
            out.append(self._verdicts(reading, scores[rows], nearest[rows]))
        return out

    def _verdicts(self, reading: Reading, scores: np.ndarray, nearest: np.ndarray) -> list[Verdict]:
        verdicts = []
        named = [j for j, c in enumerate(self._categories) if c != ANY_HARM]
        for j, (category, spec) in enumerate(self._categories.items()):
            v = int(np.argmax(scores[:, j]))
            detail = f"view: {reading.views[v].how}"
            if category == ANY_HARM and named:
                top = max(named, key=lambda k: scores[v, k])
                detail += f"; closest category: {list(self._categories)[top]} ({scores[v, top]:.2f})"
            if nearest[v, j] >= 0:
                detail += f"; nearest exemplar: '{spec.exemplars[nearest[v, j]]}'"
            verdicts.append(
                decide(STAGE, self.name, self.version, category, float(scores[v, j]), spec.thresholds, detail)
            )
        verdicts.extend(self._evasion_verdicts(reading))
        return verdicts

    def _evasion_verdicts(self, reading: Reading) -> list[Verdict]:
        if self._evasion_action is Action.allow:
            return []
        thresholds = Thresholds(**{self._evasion_action.value: 1.0})
        found = 1.0 if reading.evasion else 0.0
        detail = ", ".join(reading.evasion) if reading.evasion else "none found"
        return [decide(STAGE, "deobfuscation", "1", "evasion", found, thresholds, detail)]
