"""Screening: classifiers that turn prompts, images and frames into explainable Verdicts."""

from moderation.clip_filter import ClipConceptFilter, ClipLoadError
from moderation.image import NudityClassifier, NudityDetector
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
    "MiniLMEncoder",
    "NudityClassifier",
    "NudityDetector",
    "ProfanityClassifier",
    "SemanticClassifier",
    "Verdict",
    "decide",
    "first_blocking",
    "normalise",
    "strongest",
]
