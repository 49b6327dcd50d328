"""The Policy schema.

A policy is data: a TOML file validated by these pydantic models. Its version is the sha256 of
the file's bytes, so two deployments that report the same version screened under the same rules.
"""

from __future__ import annotations

import hashlib
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, the field and the problem."""


class Action(StrEnum):
    """What a verdict does to a request. Ordered: allow < flag < block."""

    allow = "allow"
    flag = "flag"
    block = "block"

    @property
    def rank(self) -> int:
        return {"allow": 0, "flag": 1, "block": 2}[self.value]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Strict):
    """Score thresholds for one category: at or above `block` blocks, at or above `flag` flags."""

    flag: float | None = Field(default=None, ge=0.0, le=1.0)
    block: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.flag is None and self.block is None:
            raise ValueError("set at least one of 'flag' and 'block'")
        if self.flag is not None and self.block is not None and self.flag > self.block:
            raise ValueError(f"'flag' ({self.flag}) must not exceed 'block' ({self.block})")
        return self

    def decide(self, score: float) -> tuple[Action, float]:
        """The action for `score` and the threshold that decided it.

        When nothing triggers, the threshold returned is the lowest one that would have.
        """
        if self.block is not None and score >= self.block:
            return Action.block, self.block
        if self.flag is not None and score >= self.flag:
            return Action.flag, self.flag
        lowest = self.flag if self.flag is not None else self.block
        assert lowest is not None
        return Action.allow, lowest


class ProfanityRule(_Strict):
    """alt-profanity-check's probability that the prompt is offensive."""

    enabled: bool = True
    category: str = "harassment"
    thresholds: Thresholds


class SemanticCategory(_Strict):
    """Exemplar phrases for one category; the score is the highest cosine similarity to any."""

    thresholds: Thresholds
    exemplars: list[str] = Field(min_length=1)


class PromptCategory(_Strict):
    """One category of the prompt classifier: its calibrated-score thresholds and exemplar phrases.

    Exemplars are visual descriptions of what the category looks like in a video prompt; the
    classifier fuses the prompt's similarity to them with its trained head, and
    `hallmark train prompt-classifier` uses them as training examples.
    """

    description: str = ""
    thresholds: Thresholds
    exemplars: list[str] = Field(default_factory=list)


class PromptModelRule(_Strict):
    """The trained prompt classifier, and what to do with what it cannot read."""

    enabled: bool = True
    weights: str | None = None  # a file from `hallmark train prompt-classifier`; None: the shipped one
    evasion: Action = Action.flag  # encoded payloads, jailbreak wrappers, invisible characters
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)  # ISO 639-1 codes
    # A prompt in another language is scored all the same, but the head was trained on English:
    # the policy says whether such a prompt is flagged for review or blocked.
    unsupported_language: Literal["flag", "block"] = "flag"
    language_confidence: float = Field(default=0.9, gt=0.0, le=1.0)
    # A prompt that blocks in several named categories blocks in the one the attribution head gives
    # most of its harm to, and in another only if at least this share of the harm is attributed to
    # that one; otherwise the other is flagged (0: every category over its threshold blocks).
    second_category_share: float = Field(default=0.0, ge=0.0, le=1.0)


class ExternalTextModel(_Strict):
    """A transformers sequence-classification model as an extra prompt signal (a hub id or a local
    directory), and how its labels map onto the policy's categories."""

    model: str = Field(min_length=1)
    revision: str | None = None
    labels: dict[str, str] = Field(min_length=1)  # the model's label -> a category name
    thresholds: Thresholds
    # Until its thresholds are measured on your data (`hallmark eval prompts`), it may only flag.
    max_action: Action = Action.flag


class BlocklistRule(_Strict):
    """Terms matched as whole words after normalising case, confusables and leetspeak."""

    action: Literal["flag", "block"] = "block"
    terms: list[str] = Field(min_length=1)


class PromptPolicy(_Strict):
    max_length: int = Field(default=2000, gt=0)
    model: PromptModelRule = PromptModelRule()
    categories: dict[str, PromptCategory] = Field(default_factory=dict)  # the trained classifier's
    blocklist: dict[str, BlocklistRule] = Field(default_factory=dict)
    # Stand-alone signals, each with its own thresholds, for policies that want them apart from
    # the fused classifier (the default policy fuses both into `categories`).
    profanity: ProfanityRule | None = None
    semantic: dict[str, SemanticCategory] = Field(default_factory=dict)
    external: ExternalTextModel | None = None

    @model_validator(mode="after")
    def _classifier_has_categories(self) -> PromptPolicy:
        if self.model.enabled and not self.categories:
            raise ValueError("the prompt classifier is enabled but [prompt.categories] is empty")
        return self


class NudityRule(_Strict):
    """NudeNet detector labels that count for a category, and the thresholds on their confidence."""

    enabled: bool = True
    category: str = "sexual"
    labels: list[str] = Field(min_length=1)
    thresholds: Thresholds


class ImagePolicy(_Strict):
    nudity: NudityRule
    max_megabytes: float = Field(default=10.0, gt=0)  # an input image file, as uploaded
    max_pixels: int = Field(default=4096 * 4096, gt=0)  # decoded size: no decompression bombs
    types: list[Literal["image/png", "image/jpeg", "image/webp"]] = ["image/png", "image/jpeg", "image/webp"]


class ClipConcept(_Strict):
    """Text prompts describing a concept; a frame's score is its highest cosine similarity to any."""

    prompts: list[str] = Field(min_length=1)
    thresholds: Thresholds


class FrameAggregation(_Strict):
    """How per-frame scores make one clip score, which the thresholds then judge.

    - `any`: the highest frame score (one frame over the threshold decides);
    - `k_of_n`: the k-th highest frame score (k frames must be over it);
    - `window`: the highest k-th score within any `window` consecutive frames (k frames close together).
    """

    rule: Literal["any", "k_of_n", "window"] = "any"
    k: int = Field(default=1, ge=1)
    window: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> FrameAggregation:
        if self.rule == "any" and (self.k != 1 or self.window is not None):
            raise ValueError("rule 'any' takes neither k nor window")
        if self.rule == "k_of_n" and self.window is not None:
            raise ValueError("rule 'k_of_n' takes no window; use rule 'window'")
        if self.rule == "window" and (self.window is None or self.k > self.window):
            raise ValueError("rule 'window' needs a window of at least k frames")
        return self

    def describe(self) -> str:
        if self.rule == "any":
            return "any frame"
        if self.rule == "k_of_n":
            return f"{self.k} of n frames"
        return f"{self.k} frames within {self.window}"


class FramePolicy(_Strict):
    clip_concepts: dict[str, ClipConcept] = Field(min_length=1)
    aggregation: FrameAggregation = FrameAggregation()
    # An uncalibrated filter (no pretrained weights available) can at most take this action:
    # its scores are real model outputs, but its thresholds were not tuned for those weights.
    uncalibrated_max_action: Action = Action.flag
    nudity: NudityRule


class VisibleWatermarkPolicy(_Strict):
    enabled: bool = True
    text: str = Field(default="AI-generated", min_length=1, max_length=64)
    position: Literal["top-left", "top-right", "bottom-left", "bottom-right"] = "bottom-right"
    opacity: float = Field(default=0.7, gt=0.0, le=1.0)


class ProvenancePolicy(_Strict):
    visible_watermark: VisibleWatermarkPolicy = VisibleWatermarkPolicy()
    # c2pa.training-mining: whether the output may be used to train or mine AI models.
    training_mining: Literal["allowed", "notAllowed", "constrained"] = "notAllowed"


class Tier(_Strict):
    """What one plan may generate, as video services sell them. Checked before a job is queued."""

    max_height: int = Field(gt=0, le=4320)  # the short side in pixels: 480, 720, 1080
    max_seconds: float = Field(gt=0, le=600)
    visible_watermark_removable: bool = False
    generations_per_month: int = Field(gt=0)  # per user, calendar month (UTC)
    concurrent_jobs: int = Field(gt=0)  # per user: queued and running


class Policy(_Strict):
    """A complete, validated generation policy."""

    schema_version: Literal[1] = 1
    name: str = Field(min_length=1)
    description: str = ""
    prompt: PromptPolicy
    image: ImagePolicy
    frames: FramePolicy
    provenance: ProvenancePolicy = ProvenancePolicy()
    tiers: dict[str, Tier] = Field(min_length=1)
    default_tier: str  # the tier of API keys created without one

    @model_validator(mode="after")
    def _default_tier_exists(self) -> Policy:
        if self.default_tier not in self.tiers:
            raise ValueError(
                f"default_tier {self.default_tier!r} is not one of the tiers ({', '.join(self.tiers)})"
            )
        return self

    # Filled by `load`: the content hash of the source file, and where it came from.
    version: str = Field(default="", exclude=True)
    source: str = Field(default="", exclude=True)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Policy:
        """Load and validate a policy file (the shipped default when `path` is None).

        Raises PolicyError naming the file, the field and the problem.
        """
        file = Path(path) if path is not None else default_policy_path()
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise PolicyError(f"{file}: cannot read policy file: {exc.strerror or exc}") from exc
        return cls.from_toml(raw, source=str(file))

    @classmethod
    def from_toml(cls, raw: bytes, source: str = "<string>") -> Policy:
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise PolicyError(f"{source}: not valid TOML: {exc}") from exc
        for reserved in ("version", "source"):
            if reserved in data:
                raise PolicyError(
                    f"{source}: field '{reserved}': is computed when the policy loads; remove it"
                )
        try:
            policy = cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"field '{'.'.join(str(p) for p in err['loc']) or '<root>'}': {err['msg']}"
                for err in exc.errors()
            )
            raise PolicyError(f"{source}: {problems}") from exc
        version = "sha256:" + hashlib.sha256(raw).hexdigest()[:16]
        return policy.model_copy(update={"version": version, "source": source})

    def tier(self, name: str | None) -> Tier:
        """The named tier (the default one for None); PolicyError if the policy has no such tier."""
        name = name or self.default_tier
        if name not in self.tiers:
            raise PolicyError(f"policy {self.label} has no tier {name!r} (tiers: {', '.join(self.tiers)})")
        return self.tiers[name]

    @property
    def label(self) -> str:
        """`name@version`, the way the policy is named in records and manifests."""
        return f"{self.name}@{self.version}"


def default_policy_path() -> Path:
    return Path(__file__).parent / "policies" / "default.toml"
