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

from audit import AuditStore, Outcome, RecordDraft
from generator.backend import DiffusersBackend, GenerationSpec
from generator.request import GenerationRequest, Problem, RequestRefused, check
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


class Classifier(Protocol):
    name: str
    version: str

    def classify(self, item) -> list[Verdict]: ...


@dataclass
class GenerationResult:
    generation_id: str
    status: Outcome
    verdicts: list[Verdict]
    policy: str
    model_id: str
    model_version: str
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
    def model(self) -> str:
        return f"{self.model_id} {self.model_version}"

    @property
    def released(self) -> bool:
        return self.status == Outcome.released


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
        problems = check(request, self.policy)
        if request.output is None:
            problems.append(Problem("output", "is required to run a generation"))
        if problems:
            return self._refuse(request, result, problems)
        payload = secrets.token_bytes(6)  # the generation key the watermark carries
        # Unique per run: two runs of one job (a worker taken over) never share a staging file.
        staging = request.output.with_name(
            f".{request.output.name}.{result.generation_id}.{secrets.token_hex(4)}.partial"
        )
        try:
            reserved = self._reserve(request)
        except RequestRefused as refused:
            return self._refuse(request, result, refused.problems)
        moved_into_place = False
        manifest_store: bytes | None = None
        try:
            self._screen_inputs(request, result, progress)
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

            result.status = Outcome.released
            result.output = request.output
            self._record(request, result, progress, manifest_store)
            staging.replace(request.output)
            moved_into_place = True
        except (BlockedAt, StageFailed) as stopped:
            _stopped(result, stopped)
            self._record(request, result, progress)
        except Cancelled:
            result.status, result.reason = Outcome.cancelled, "cancelled by request"
            result.stage = next(reversed(result.timings), None)  # the stage it was in
            result.output = result.output_sha256 = result.manifest_label = None
            self._record(request, result, _quiet)
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
        problems = check(request, self.policy)
        if problems:
            return self._refuse(request, result, problems)
        try:
            self._screen_inputs(request, result, _quiet)
        except (BlockedAt, StageFailed) as stopped:
            _stopped(result, stopped)
            self._record(request, result, _quiet)
            return result
        return None

    def record_outcome(
        self, request: GenerationRequest, status: Outcome, stage: str, reason: str
    ) -> GenerationResult:
        """Record a request that ended without running (cancelled in the queue, or given up)."""
        result = self._new_result(request)
        result.status, result.stage, result.reason = status, stage, reason
        self._record(request, result, _quiet)
        return result

    def _new_result(self, request: GenerationRequest) -> GenerationResult:
        return new_result(request, self.policy, self.backend.name, self.backend.version)

    # -- stages -----------------------------------------------------------------------------

    def _refuse(
        self, request: GenerationRequest, result: GenerationResult, problems: list[Problem]
    ) -> GenerationResult:
        """Record a request that failed its checks: refused at the `request` stage, nothing ran."""
        return refuse(self.audit, self.policy, result, request, problems)

    @staticmethod
    def _reserve(request: GenerationRequest) -> bool:
        """Reserve the output path; True when this call created its placeholder."""
        request.output.parent.mkdir(parents=True, exist_ok=True)
        if request.overwrite:
            return False
        try:
            # An empty placeholder: a concurrent request for the same path fails here, not later.
            os.close(os.open(request.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            problem = Problem("output", f"{request.output} exists; set overwrite to replace it")
            raise RequestRefused([problem]) from None
        return True

    def _screen_inputs(
        self, request: GenerationRequest, result: GenerationResult, progress: Progress
    ) -> None:
        """The screening before generation, shared by the gate and the full run."""
        self._screen("prompt", self.prompt_classifiers, request.prompt, result, progress)
        if request.image is not None:
            self._screen("image", self.image_classifiers, request.image, result, progress)

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
        draft = record_draft(request, result, self.policy, manifest_store)
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


def refuse(
    audit: AuditStore,
    policy: Policy,
    result: GenerationResult,
    request: GenerationRequest,
    problems: list[Problem],
) -> GenerationResult:
    """Record a request that failed `check`: refused at the `request` stage, nothing ran. Needs
    no pipeline, so a request is refused before any model loads."""
    result.status, result.stage = Outcome.refused, "request"
    result.reason = "; ".join(str(p) for p in problems)
    draft = record_draft(request, result, policy)
    # The prompt that failed its check may not be storable text (a lone surrogate, a NUL byte).
    draft.prompt = draft.prompt.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    result.record_id = audit.record(draft).seq
    return result


def new_result(
    request: GenerationRequest, policy: Policy, model_id: str, model_version: str
) -> GenerationResult:
    return GenerationResult(
        generation_id=request.generation_id or str(uuid.uuid4()),
        status=Outcome.error,
        verdicts=[],
        policy=policy.label,
        model_id=model_id,
        model_version=model_version,
    )


def record_draft(
    request: GenerationRequest, result: GenerationResult, policy: Policy, manifest_store: bytes | None = None
) -> RecordDraft:
    """The audit record of a request's outcome."""
    released = result.status == Outcome.released
    return RecordDraft(
        generation_id=result.generation_id,
        prompt=request.prompt,
        policy_name=policy.name,
        policy_version=policy.version,
        model_id=result.model_id,
        model_version=result.model_version,
        status=result.status,
        verdicts=[v.to_dict() for v in result.verdicts],
        tenant=request.tenant,
        user=request.user,
        tier=request.tier or policy.default_tier,
        input_image_sha256=hashlib.sha256(request.image.tobytes()).hexdigest()
        if request.image is not None
        else None,
        flagged=result.flagged,
        blocked_stage=result.stage,
        reason=result.reason,
        output_sha256=result.output_sha256,
        output_path=str(request.output.resolve()) if released else None,
        watermark_payload=result.watermark_payload,
        watermark_method=result.watermark_method if result.watermark_payload else None,
        watermark_key_id=result.watermark_key_id if result.watermark_payload else None,
        manifest_label=result.manifest_label,
        manifest_store=manifest_store if released else None,
    )


def _quiet(stage: str, done: int, total: int) -> None:
    """The progress callback of a caller that wants none."""


def _stopped(result: GenerationResult, stopped: BlockedAt | StageFailed) -> None:
    """Mark the result of a request that a stage blocked or failed; nothing is released."""
    result.status = Outcome.blocked if isinstance(stopped, BlockedAt) else Outcome.error
    result.stage, result.reason = stopped.stage, str(stopped)
    result.output = result.output_sha256 = result.manifest_label = None


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
