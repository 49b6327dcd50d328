"""Diffusion backends: load a diffusers text-to-video pipeline and turn a spec into frames."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from generator.tiny import TINY_MODEL_ID, TINY_MODEL_VERSION, build_tiny_pipeline, quiet_diffusers

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]  # (steps done, total steps)


class GeneratorError(RuntimeError):
    """The model could not be loaded or could not generate."""


@dataclass(frozen=True)
class GenerationSpec:
    prompt: str
    num_frames: int = 16
    height: int = 256
    width: int = 256
    steps: int = 8
    seed: int = 0
    guidance_scale: float = 7.5
    image: np.ndarray | None = None  # RGB uint8 (H,W,3) conditioning image
    image_strength: float = 0.7  # how far from the image the video may go (image-to-video by SDEdit)


class DiffusersBackend:
    """A diffusers video pipeline: the built-in tiny model, a hub id, or a local directory.

    Frames come back as one uint8 array (T,H,W,3). The same seed gives the same frames.
    """

    def __init__(self, pipe, model_id: str, model_version: str, image_pipe=None, device: str = "cpu"):
        self._pipe = pipe.to(device)
        self._pipe.set_progress_bar_config(disable=True)
        self._image_pipe = image_pipe
        if image_pipe is not None:
            image_pipe.set_progress_bar_config(disable=True)
        self._device = device
        self.name = model_id
        self.version = model_version

    @classmethod
    def tiny(cls, device: str = "cpu") -> DiffusersBackend:
        from diffusers import VideoToVideoSDPipeline

        pipe = build_tiny_pipeline()
        # Image-to-video with the same weights: the image, repeated, is the starting video.
        with quiet_diffusers():
            image_pipe = VideoToVideoSDPipeline(**pipe.components)
        return cls(pipe, TINY_MODEL_ID, TINY_MODEL_VERSION, image_pipe=image_pipe, device=device)

    @classmethod
    def from_pretrained(
        cls, model: str, device: str = "cpu", dtype: str = "float32", revision: str | None = None
    ) -> DiffusersBackend:
        """Load a text-to-video pipeline from a hub id (e.g. "Lightricks/LTX-Video") or a directory."""
        if model == "tiny":
            return cls.tiny(device)
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(
                model, torch_dtype=getattr(torch, dtype), revision=revision
            )
        except Exception as exc:  # hub, file-system and config errors all arrive here
            where = "directory" if Path(model).exists() else "hub id"
            raise GeneratorError(f"cannot load diffusers pipeline from {where} '{model}': {exc}") from exc
        # A hub model is only reproducible at a pinned revision; say so when none was given.
        version = revision or ("local" if Path(model).exists() else "unpinned")
        return cls(pipe, model, version, device=device)

    @property
    def accepts_image(self) -> bool:
        return self._image_pipe is not None or "image" in inspect.signature(self._pipe.__call__).parameters

    def generate(self, spec: GenerationSpec, on_step: StepCallback | None = None) -> np.ndarray:
        pipe, kwargs = (
            self._pipe,
            dict(
                prompt=spec.prompt,
                num_inference_steps=spec.steps,
                guidance_scale=spec.guidance_scale,
                generator=torch.Generator(device="cpu").manual_seed(spec.seed),
                output_type="np",
            ),
        )
        if spec.image is not None:
            if not self.accepts_image:
                raise GeneratorError(f"model '{self.name}' is text-to-video; it takes no input image")
            if self._image_pipe is not None:
                pipe = self._image_pipe
                image = _resize(spec.image, spec.height, spec.width).astype(np.float32) / 255.0
                kwargs.update(video=[image] * spec.num_frames, strength=spec.image_strength)
            else:
                from PIL import Image

                kwargs.update(
                    image=Image.fromarray(spec.image),
                    num_frames=spec.num_frames,
                    height=spec.height,
                    width=spec.width,
                )
        else:
            kwargs.update(num_frames=spec.num_frames, height=spec.height, width=spec.width)
        kwargs.update(_step_callback_kwargs(pipe, spec.steps, on_step))
        frames = pipe(**kwargs).frames
        return _to_uint8_video(frames)[: spec.num_frames]


def _step_callback_kwargs(pipe, steps: int, on_step: StepCallback | None) -> dict:
    """Hook progress into whichever callback style this pipeline supports."""
    if on_step is None:
        return {}
    params = inspect.signature(pipe.__call__).parameters
    if "callback_on_step_end" in params:

        def step_end(_pipe, step, _timestep, tensors):
            on_step(step + 1, steps)
            return tensors

        return {"callback_on_step_end": step_end}
    if "callback" in params:
        return {"callback": lambda step, _t, _latents: on_step(step + 1, steps), "callback_steps": 1}
    return {}


def _to_uint8_video(frames) -> np.ndarray:
    """diffusers returns (B,T,H,W,3) floats in [0,1], a list of PIL frames, or a tensor; unify."""
    if isinstance(frames, torch.Tensor):
        frames = frames.float().cpu().numpy()
    if isinstance(frames, list | tuple):
        frames = frames[0]
        if not isinstance(frames, np.ndarray):
            frames = np.stack([np.asarray(f) for f in frames])
    frames = np.asarray(frames)
    if frames.ndim == 5:
        frames = frames[0]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise GeneratorError(f"unexpected frame layout from the pipeline: shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.ascontiguousarray(frames)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).convert("RGB").resize((width, height), Image.BICUBIC))
