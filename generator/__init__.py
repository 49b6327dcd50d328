"""Generation: diffusion backends and the guarded pipeline that runs every stage in order."""

from generator.backend import DiffusersBackend, GenerationSpec, GeneratorError
from generator.pipeline import GenerationResult, GuardedPipeline
from generator.request import GenerationRequest, Problem, RequestRefused, check

__all__ = [
    "DiffusersBackend",
    "GenerationRequest",
    "GenerationResult",
    "GenerationSpec",
    "GeneratorError",
    "GuardedPipeline",
    "Problem",
    "RequestRefused",
    "check",
]
