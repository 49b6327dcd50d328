"""Versioned generation policies: pydantic schema, TOML loading, content-hash versions."""

from policy.schema import (
    Action,
    BlocklistRule,
    ClipConcept,
    FramePolicy,
    ImagePolicy,
    NudityRule,
    Policy,
    PolicyError,
    PromptPolicy,
    ProvenancePolicy,
    SemanticCategory,
    Thresholds,
    Tier,
    VisibleWatermarkPolicy,
    default_policy_path,
)

__all__ = [
    "Action",
    "BlocklistRule",
    "ClipConcept",
    "FramePolicy",
    "ImagePolicy",
    "NudityRule",
    "Policy",
    "PolicyError",
    "PromptPolicy",
    "ProvenancePolicy",
    "SemanticCategory",
    "Thresholds",
    "Tier",
    "VisibleWatermarkPolicy",
    "default_policy_path",
]
