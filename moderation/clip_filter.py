"""CLIP concept filter on open_clip, in the manner of Stable Diffusion's safety checker.

Each frame's image embedding is compared (cosine similarity) with the text embeddings of the
policy's concept prompts; a frame's score for a concept is its highest similarity over the
concept's prompts, and the policy's aggregation rule turns the frame scores into the clip's.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from moderation.aggregate import frame_verdict
from moderation.verdict import Verdict
from policy import Action, ClipConcept, FrameAggregation

STAGE = "frames"


class ClipLoadError(RuntimeError):
    """Configured CLIP weights could not be loaded."""


class ClipConceptFilter:
    """Scores frames against concept prompts; batched over frames.

    `pretrained` is an open_clip pretrained tag (e.g. "laion2b_s34b_b79k", fetched through its hub
    cache) or the path of a local checkpoint. None runs the architecture without pretrained weights:
    the scores are still real model outputs, but no threshold means anything for them, so every
    verdict says calibrated=False and its action is capped at `uncalibrated_max_action`.
    """

    def __init__(
        self,
        concepts: dict[str, ClipConcept],
        model_name: str = "ViT-B-32",
        pretrained: str | None = None,
        uncalibrated_max_action: Action = Action.flag,
        batch_size: int = 16,
        device: str = "cpu",
        aggregation: FrameAggregation | None = None,
    ) -> None:
        import open_clip

        self.calibrated = bool(pretrained)
        try:
            if pretrained:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=pretrained, device=device
                )
            else:
                # Seeded so that the uncalibrated model is the same on every machine.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    model, _, preprocess = open_clip.create_model_and_transforms(
                        model_name, pretrained=None, device=device
                    )
        except Exception as exc:  # open_clip raises RuntimeError, OSError, HF hub errors...
            raise ClipLoadError(
                f"cannot load open_clip model '{model_name}' with pretrained='{pretrained}': {exc}"
            ) from exc
        model.eval()
        weights = Path(pretrained).name if pretrained and Path(pretrained).exists() else pretrained
        self.name = f"open_clip-{model_name}"
        self.version = f"{weights or 'uncalibrated'} (open_clip {metadata.version('open_clip_torch')})"
        self._model = model
        self._device = device
        self._batch_size = batch_size
        self._concepts = concepts
        self._aggregation = aggregation or FrameAggregation()
        self._max_action = Action.block if self.calibrated else uncalibrated_max_action
        size = model.visual.image_size
        self._size = size[0] if isinstance(size, tuple | list) else int(size)
        norm = next(t for t in preprocess.transforms if t.__class__.__name__ == "Normalize")
        self._mean = torch.tensor(norm.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(norm.std, device=device).view(1, 3, 1, 1)
        tokenizer = open_clip.get_tokenizer(model_name)
        with torch.inference_mode():
            self._concept_embeddings = {
                name: F.normalize(model.encode_text(tokenizer(c.prompts).to(device)).float(), dim=-1)
                for name, c in concepts.items()
            }

    def _preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """Resize the short side, centre-crop and normalise a (N,H,W,3) uint8 batch, on tensors."""
        x = torch.from_numpy(frames).to(self._device).permute(0, 3, 1, 2).float() / 255.0
        h, w = x.shape[-2:]
        scale = self._size / min(h, w)
        x = F.interpolate(
            x,
            size=(max(self._size, round(h * scale)), max(self._size, round(w * scale))),
            mode="bicubic",
            align_corners=False,
            antialias=True,
        ).clamp(0, 1)
        top = (x.shape[-2] - self._size) // 2
        left = (x.shape[-1] - self._size) // 2
        x = x[..., top : top + self._size, left : left + self._size]
        return (x - self._mean) / self._std

    def similarities(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Per concept, the (frames, prompts) matrix of cosine similarities."""
        embeddings = []
        with torch.inference_mode():
            for start in range(0, len(frames), self._batch_size):
                batch = self._preprocess(frames[start : start + self._batch_size])
                embeddings.append(F.normalize(self._model.encode_image(batch).float(), dim=-1))
        image = torch.cat(embeddings)
        return {n: (image @ t.T).cpu().numpy() for n, t in self._concept_embeddings.items()}

    def frame_scores(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Per concept, each frame's score: its highest similarity to the concept's prompts."""
        return {name: sims.max(axis=1) for name, sims in self.similarities(frames).items()}

    def classify(self, frames: np.ndarray) -> list[Verdict]:
        verdicts = []
        for name, sims in self.similarities(frames).items():
            concept = self._concepts[name]
            prompt = concept.prompts[int(np.argmax(sims.max(axis=0)))]
            verdicts.append(
                frame_verdict(
                    STAGE,
                    self.name,
                    self.version,
                    name,
                    sims.max(axis=1),
                    concept.thresholds,
                    self._aggregation,
                    detail=f"closest prompt '{prompt}'",
                    calibrated=self.calibrated,
                    max_action=self._max_action,
                )
            )
        return verdicts
