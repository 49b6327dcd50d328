"""The guarded generation pipeline: the whole flow of a request, top to bottom.

    screen prompt -> screen input image -> generate -> screen frames -> visible watermark
    -> invisible watermark -> encode H.264 -> sign C2PA -> check the released file -> audit

Every stage is a constructor argument. A request that a stage blocks stops there; a stage that
raises stops the request too (fail closed). Either way one audit record is written, naming the
stage, and no file is released. A released file is moved into place only after its audit record
is written.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from audit import AuditStore, RecordDraft
from generator.backend import DiffusersBackend, GenerationSpec
from moderation import Verdict, attributed_category, first_blocking, strongest
from policy import Action, Policy
from provenance import (
    Ingredient,
    ManifestFacts,
    ManifestSigner,
    VideoWatermark,
    VisibleWatermark,
    encode_mp4,
    sha256_file,
)
from provenance.manifest import jpeg_thumbnail, png_bytes
from provenance.video import iter_frames

__version__ = "0.1.0"

STAGES = (
    "request",
    "prompt",
    "image",
    "generate",
    "frames",
    "visible_watermark",
    "invisible_watermark",
    "encode",
    "sign",
    "release_check",
    "audit",
)

Progress = Callable[[str, int, int], None]  # (stage, done, total)

# The invisible watermark is read from several frames together; with fewer than 8 it is not
# reliable enough to pass the release check (measured with the dwtDctSvd baseline: 4 frames
# failed 2 reads in 12).
MIN_FRAMES = 8


class Classifier(Protocol):
    name: str
    version: str

    def classify(self, item) -> list[Verdict]: ...


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    output: Path
    image: np.ndarray | None = None  # RGB uint8 input image
    # The input image file as supplied, recorded as the C2PA ingredient with any manifest of its
    # own; without it, the ingredient is a PNG of `image`.
    image_file: Ingredient | None = None
    num_frames: int = 16
    height: int = 256
    width: int = 256
    steps: int = 8
    seed: int = 0
    fps: int = 8
    tenant: str = "default"
    user: str = "local"
    overwrite: bool = False  # replace `output` if it exists
    tier: str | None = None  # the policy tier whose limits apply (None: the policy's default)
    visible_watermark: bool = True  # False only where the tier lets the watermark be removed
    generation_id: str | None = None  # fixed by a job queue, so a retried job keeps its id


@dataclass
class GenerationResult:
    generation_id: str
    status: str  # released, blocked or error
    verdicts: list[Verdict]
    policy: str
    model: str
    output: Path | None = None
    output_sha256: str | None = None
    watermark_payload: str | None = None
    watermark_method: str | None = None
    watermark_key_id: int | None = None
    manifest_label: str | None = None
    stage: str | None = None  # the stage that blocked or failed
    reason: str | None = None
    flagged: bool = False
    record_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. signed without a timestamp

    @property
    def released(self) -> bool:
        return self.status == "released"


class StageFailed(Exception):
    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage}: {type(cause).__name__}: {cause}")
        self.stage = stage


class Cancelled(Exception):
    """Raised by a progress callback to stop a request that was cancelled."""


class Abandoned(Exception):
    """Raised by a progress callback when another worker has taken the request over: this run
    stops and records nothing (the other run writes the one record)."""


class BlockedAt(Exception):
    def __init__(self, stage: str, verdict: Verdict) -> None:
        # The overall output names no category of its own: say which one the harm most likely is.
        named = attributed_category(verdict)
        super().__init__(
            f"blocked at {stage} by {verdict.classifier} ({verdict.category}"
            f"{f', most likely {named}' if named else ''}: score {verdict.score:.3f} >= threshold "
            f"{verdict.threshold:.3f})"
        )
        self.stage = stage


class GuardedPipeline:
    """Turns a request into a screened, watermarked, signed MP4 and an audit record."""

    def __init__(
        self,
        policy: Policy,
        prompt_classifiers: Sequence[Classifier],
        image_classifiers: Sequence[Classifier],
        backend: DiffusersBackend,
        frame_classifiers: Sequence[Classifier],
        visible_watermark: VisibleWatermark,
        invisible_watermark: VideoWatermark,
        signer: ManifestSigner,
        audit: AuditStore,
        crf: int = 18,
    ) -> None:
        if not prompt_classifiers or not frame_classifiers:
            raise ValueError("the pipeline needs at least one prompt classifier and one frame classifier")
        self.policy = policy
        self.prompt_classifiers = prompt_classifiers
        self.image_classifiers = image_classifiers
        self.backend = backend
        self.frame_classifiers = frame_classifiers
        self.visible_watermark = visible_watermark
        self.invisible_watermark = invisible_watermark
        self.signer = signer
        self.audit = audit
        self.crf = crf

    def __call__(self, request: GenerationRequest, progress: Progress | None = None) -> GenerationResult:
        progress = progress or (lambda stage, done, total: None)
        result = self._new_result(request)
        payload = secrets.token_bytes(6)  # the generation key the watermark carries
        # Unique per run: two runs of one job (a worker taken over) never share a staging file.
        staging = request.output.with_name(
            f".{request.output.name}.{result.generation_id}.{secrets.token_hex(4)}.partial"
        )
        reserved = moved_into_place = False
        manifest_store: bytes | None = None
        try:
            reserved = self._check_request(request)
            self._screen("prompt", self.prompt_classifiers, request.prompt, result, progress)
            if request.image is not None:
                self._screen("image", self.image_classifiers, request.image, result, progress)

            with self._stage("generate", result, progress):
                frames = self.backend.generate(
                    GenerationSpec(
                        prompt=request.prompt,
                        num_frames=request.num_frames,
                        height=request.height,
                        width=request.width,
                        steps=request.steps,
                        seed=request.seed,
                        image=request.image,
                    ),
                    on_step=lambda done, total: progress("generate", done, total),
                )

            self._screen("frames", self.frame_classifiers, frames, result, progress)

            with self._stage("visible_watermark", result, progress):
                frames = self.visible_watermark.apply(frames) if request.visible_watermark else frames
            with self._stage("invisible_watermark", result, progress):
                frames = self.invisible_watermark.embed(frames, payload)
                result.watermark_payload = payload.hex()
                result.watermark_method = self.invisible_watermark.name
                result.watermark_key_id = self.invisible_watermark.key_id
            with self._stage("encode", result, progress):
                unsigned = staging.with_suffix(".unsigned.mp4")
                encode_mp4(frames, unsigned, fps=request.fps, crf=self.crf)
            with self._stage("sign", result, progress):
                signed = self.signer.sign(unsigned, staging, self._facts(request, result, frames))
                result.manifest_label, manifest_store = signed.label, signed.store
                result.warnings += [signed.warning] if signed.warning else []
                unsigned.unlink()
            with self._stage("release_check", result, progress):
                self._check_release(staging, payload)
                result.output_sha256 = sha256_file(staging)

            result.status = "released"
            result.output = request.output
            self._record(request, result, progress, manifest_store)
            staging.replace(request.output)
            moved_into_place = True
        except BlockedAt as blocked:
            result.status, result.stage, result.reason = "blocked", blocked.stage, str(blocked)
            self._record(request, result, progress)
        except StageFailed as failed:
            result.status, result.stage, result.reason = "error", failed.stage, str(failed)
            result.output = result.output_sha256 = None
            self._record(request, result, progress)
        except Cancelled:
            result.status, result.reason = "cancelled", "cancelled by request"
            result.stage = next(reversed(result.timings), None)  # the stage it was in
            result.output = result.output_sha256 = result.manifest_label = None
            self._record(request, result, lambda stage, done, total: None)
        finally:
            for leftover in (staging, staging.with_suffix(".unsigned.mp4")):
                leftover.unlink(missing_ok=True)
            if reserved and not moved_into_place:  # drop the placeholder this request created
                request.output.unlink(missing_ok=True)
        return result

    def gate(self, request: GenerationRequest) -> GenerationResult | None:
        """The synchronous part of a request, before it is queued: the request checks and the tier
        limits, the prompt and the input image. A refused request is recorded and returned; None
        means it may be queued (the full run screens them again, with the same result)."""
        result = self._new_result(request)
        progress: Progress = lambda stage, done, total: None  # noqa: E731
        try:
            self._check_request(request, reserve=False)
            self._screen("prompt", self.prompt_classifiers, request.prompt, result, progress)
            if request.image is not None:
                self._screen("image", self.image_classifiers, request.image, result, progress)
        except BlockedAt as blocked:
            result.status, result.stage, result.reason = "blocked", blocked.stage, str(blocked)
        except StageFailed as failed:
            result.status, result.stage, result.reason = "error", failed.stage, str(failed)
        else:
            return None
        self._record(request, result, progress)
        return result

    def record_outcome(
        self, request: GenerationRequest, status: str, stage: str, reason: str
    ) -> GenerationResult:
        """Record a request that ended without running (cancelled in the queue, or given up)."""
        result = self._new_result(request)
        result.status, result.stage, result.reason = status, stage, reason
        self._record(request, result, lambda stage, done, total: None)
        return result

    def _new_result(self, request: GenerationRequest) -> GenerationResult:
        return GenerationResult(
            generation_id=request.generation_id or str(uuid.uuid4()),
            status="error",
            verdicts=[],
            policy=self.policy.label,
            model=f"{self.backend.name} {self.backend.version}",
        )

    # -- stages -----------------------------------------------------------------------------

    def _check_request(self, request: GenerationRequest, reserve: bool = True) -> bool:
        """Validate the request and reserve the output path; True when this call created it."""
        with self._stage("request", None, None):
            if not request.prompt.strip():
                raise ValueError("the prompt is empty")
            if len(request.prompt) > self.policy.prompt.max_length:
                raise ValueError(
                    f"the prompt has {len(request.prompt)} characters; the policy allows "
                    f"{self.policy.prompt.max_length}"
                )
            if request.num_frames < MIN_FRAMES:
                raise ValueError(
                    f"at least {MIN_FRAMES} frames are needed (got {request.num_frames}): the invisible "
                    "watermark is read from several frames together"
                )
            if request.output.suffix.lower() != ".mp4":
                raise ValueError(f"output must be an .mp4 file, got '{request.output.name}'")
            if request.height % 8 or request.width % 8:
                raise ValueError(
                    f"height and width must be multiples of 8, got {request.width}x{request.height}"
                )
            if request.image is not None and not self.image_classifiers:
                raise ValueError("this deployment's policy screens no input images, so it takes none")
            self._check_tier(request)
            if not reserve:
                return False
            request.output.parent.mkdir(parents=True, exist_ok=True)
            if request.overwrite:
                return False
            try:
                # An empty placeholder: a concurrent request for the same path fails here, not later.
                os.close(os.open(request.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                raise ValueError(f"{request.output} exists; set overwrite to replace it") from None
            return True

    def _check_tier(self, request: GenerationRequest) -> None:
        tier_name = request.tier or self.policy.default_tier
        tier = self.policy.tier(tier_name)
        short_side = min(request.height, request.width)
        if short_side > tier.max_height:
            raise ValueError(
                f"tier {tier_name!r} allows up to {tier.max_height}p; {request.width}x{request.height} "
                f"has a {short_side}-pixel short side"
            )
        seconds = request.num_frames / request.fps
        if seconds > tier.max_seconds + 1e-9:
            raise ValueError(
                f"tier {tier_name!r} allows up to {tier.max_seconds:g} s; {request.num_frames} frames "
                f"at {request.fps} fps last {seconds:g} s"
            )
        if not request.visible_watermark and not tier.visible_watermark_removable:
            raise ValueError(f"tier {tier_name!r} does not allow removing the visible watermark")

    def _screen(
        self,
        stage: str,
        classifiers: Sequence[Classifier],
        item,
        result: GenerationResult,
        progress: Progress,
    ) -> None:
        with self._stage(stage, result, progress):
            verdicts = [v for classifier in classifiers for v in classifier.classify(item)]
        result.verdicts.extend(verdicts)
        result.flagged = result.flagged or strongest(verdicts) is Action.flag
        blocking = first_blocking(verdicts)
        if blocking is not None:
            raise BlockedAt(stage, blocking)

    def _facts(
        self, request: GenerationRequest, result: GenerationResult, frames: np.ndarray
    ) -> ManifestFacts:
        ingredient = request.image_file
        if ingredient is None and request.image is not None:
            ingredient = Ingredient(png_bytes(request.image), "image/png", "input.png")
        return ManifestFacts(
            generation_id=result.generation_id,
            title=request.output.name,
            model_name=self.backend.name,
            model_version=self.backend.version,
            policy=self.policy.label,
            screening=screening_summary(result.verdicts),
            watermark_method=self.invisible_watermark.name,
            watermark_payload=result.watermark_payload or "",
            watermark_alg=self.invisible_watermark.soft_binding_alg,
            watermark_key_id=self.invisible_watermark.key_id,
            claim_generator_version=__version__,
            training_mining=self.policy.provenance.training_mining,
            thumbnail_jpeg=jpeg_thumbnail(frames[len(frames) // 2]),
            ingredient=ingredient,
        )

    def _check_release(self, path: Path, payload: bytes) -> None:
        """Read the signed file back as a verifier would: the watermark must carry the payload."""
        wm = self.invisible_watermark
        reading = wm.detect(iter_frames(path, format=wm.input_format))
        if reading.payload != payload.hex() or reading.key_id != wm.key_id:
            raise RuntimeError(
                f"the encoded video does not carry its watermark payload (read {reading.payload}, "
                f"key id {reading.key_id}; {reading.details})"
            )

    def _record(
        self,
        request: GenerationRequest,
        result: GenerationResult,
        progress: Progress,
        manifest_store: bytes | None = None,
    ) -> None:
        image_sha = hashlib.sha256(request.image.tobytes()).hexdigest() if request.image is not None else None
        draft = RecordDraft(
            generation_id=result.generation_id,
            prompt=request.prompt,
            policy_name=self.policy.name,
            policy_version=self.policy.version,
            model_id=self.backend.name,
            model_version=self.backend.version,
            status=result.status,
            verdicts=[v.to_dict() for v in result.verdicts],
            tenant=request.tenant,
            user=request.user,
            tier=request.tier or self.policy.default_tier,
            input_image_sha256=image_sha,
            flagged=result.flagged,
            blocked_stage=result.stage,
            reason=result.reason,
            output_sha256=result.output_sha256,
            output_path=str(request.output.resolve()) if result.status == "released" else None,
            watermark_payload=result.watermark_payload,
            watermark_method=self.invisible_watermark.name if result.watermark_payload else None,
            watermark_key_id=result.watermark_key_id if result.watermark_payload else None,
            manifest_label=result.manifest_label,
            manifest_store=manifest_store if result.status == "released" else None,
        )
        start = time.perf_counter()
        progress("audit", 0, 1)
        # No try: if the audit write fails, the exception propagates and nothing is released.
        result.record_id = self.audit.record(draft).seq
        result.timings["audit"] = time.perf_counter() - start
        progress("audit", 1, 1)

    @contextmanager
    def _stage(
        self, stage: str, result: GenerationResult | None, progress: Progress | None
    ) -> Iterator[None]:
        """Time a stage and turn any exception in it into StageFailed (fail closed)."""
        if progress:
            progress(stage, 0, 1)
        start = time.perf_counter()
        try:
            yield
        except (BlockedAt, StageFailed, Cancelled, Abandoned):
            raise
        except Exception as exc:
            raise StageFailed(stage, exc) from exc
        finally:
            if result is not None:
                result.timings[stage] = result.timings.get(stage, 0.0) + time.perf_counter() - start
        if progress:
            progress(stage, 1, 1)


def screening_summary(verdicts: Sequence[Verdict]) -> dict:
    """For the manifest: each classifier with its version, the highest score per category."""
    classifiers: dict[str, dict] = {}
    for v in verdicts:
        entry = classifiers.setdefault(
            v.classifier, {"version": v.classifier_version, "calibrated": v.calibrated, "highest": {}}
        )
        best = entry["highest"].get(v.category)
        if best is None or v.score > best["score"]:
            entry["highest"][v.category] = {
                "score": round(v.score, 4),
                "threshold": v.threshold,
                "action": v.action.value,
            }
    uncalibrated = sorted({v.classifier for v in verdicts if not v.calibrated})
    return {"classifiers": classifiers, "uncalibrated": uncalibrated}
