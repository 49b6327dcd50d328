"""An extra prompt signal: any transformers sequence-classification model, from a hub id or a
local directory, loaded exactly as `from_pretrained` loads it (a user with weights, e.g. a
toxicity or safety classifier). The policy maps its labels onto categories."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moderation.deobfuscate import read_prompt
from moderation.verdict import Verdict, decide
from policy import Action, ExternalTextModel

STAGE = "prompt"


class ExternalModelError(RuntimeError):
    """The configured model could not be loaded, or does not have the labels the policy maps."""


class TransformersTextClassifier:
    """Scores every view of the prompt; per mapped label, the highest probability over the views."""

    def __init__(self, rule: ExternalTextModel, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(rule.model, revision=rule.revision)
            self._model = AutoModelForSequenceClassification.from_pretrained(
                rule.model, revision=rule.revision
            )
        except Exception as exc:  # OSError, ValueError, hub errors: all mean "cannot load"
            raise ExternalModelError(f"cannot load the prompt model {rule.model!r}: {exc}") from exc
        self._model.to(device).eval()
        id2label = {int(i): str(label) for i, label in self._model.config.id2label.items()}
        missing = [label for label in rule.labels if label not in id2label.values()]
        if missing:
            raise ExternalModelError(
                f"the prompt model {rule.model!r} has no labels {missing} "
                f"(it has: {', '.join(id2label.values())})"
            )
        self._index = {
            label: next(i for i, name in id2label.items() if name == label) for label in rule.labels
        }
        self._multi_label = self._model.config.problem_type == "multi_label_classification"
        self._rule = rule
        self._device = device
        self._torch = torch
        self.name = Path(rule.model).name if Path(rule.model).exists() else rule.model
        self.version = rule.revision or getattr(self._model.config, "_commit_hash", None) or "local"

    def probabilities(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            logits = self._model(**batch.to(self._device)).logits.float()
        probs = torch.sigmoid(logits) if self._multi_label else torch.softmax(logits, dim=-1)
        return probs.cpu().numpy()

    def classify(self, prompt: str) -> list[Verdict]:
        reading = read_prompt(prompt)
        probs = self.probabilities(reading.texts)
        verdicts = []
        for label, category in self._rule.labels.items():
            column = probs[:, self._index[label]]
            view = int(np.argmax(column))
            verdicts.append(
                decide(
                    STAGE,
                    self.name,
                    self.version,
                    category,
                    float(column[view]),
                    self._rule.thresholds,
                    detail=f"label '{label}'; view: {reading.views[view].how}",
                    calibrated=self._rule.max_action is Action.block,
                    max_action=self._rule.max_action,
                )
            )
        return verdicts
