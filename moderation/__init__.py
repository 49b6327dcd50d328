"""Screening: classifiers that turn prompts, images and frames into explainable Verdicts."""

from moderation.clip_filter import ClipConceptFilter, ClipLoadError
from moderation.external import ExternalModelError, TransformersTextClassifier
from moderation.image import NudityClassifier, NudityDetector
from moderation.language import LanguageClassifier
from moderation.prompt_head import HeadError, HeadWeights, PromptModel, attributed_category
from moderation.text import (
    BlocklistClassifier,
    MiniLMEncoder,
    ProfanityClassifier,
    SemanticClassifier,
    normalise,
)
from moderation.verdict import Verdict, decide, first_blocking, strongest

__all__ = [
    "BlocklistClassifier",
    "ClipConceptFilter",
    "ClipLoadError",
    "ExternalModelError",
    "HeadError",
    "HeadWeights",
    "LanguageClassifier",
    "MiniLMEncoder",
    "NudityClassifier",
    "NudityDetector",
    "ProfanityClassifier",
    "PromptModel",
    "SemanticClassifier",
    "TransformersTextClassifier",
    "Verdict",
    "attributed_category",
    "decide",
    "first_blocking",
    "normalise",
    "strongest",
]
