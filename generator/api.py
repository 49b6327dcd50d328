"""The generation service under /v1/generations, for platform teams (generator API keys).

POST answers at once: the tier limits, the prompt and the input image are checked first, so a
refused request gets its answer (and its audit record) synchronously; an accepted one is queued
and answered with its job. GET shows the job's state and progress; cancel stops it; when it
has succeeded, /video is the signed MP4 and /report its provenance report.
"""

import base64
import binascii
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from audit import chain
from audit.api import principal_dependency
from audit.jobs import IdempotencyConflict, JobDraft, JobNotFound, JobStore, QuotaExceeded
from audit.keys import Principal
from audit.models import GenerationJob
from audit.queries import verdict_view
from audit.store import AuditStore
from generator import metrics
from generator.jobs import JobQueue, JobSettings, cancel, decode_image, frame_size, request_digest, submit
from generator.pipeline import MIN_FRAMES, GenerationRequest, GuardedPipeline
from moderation import first_blocking
from policy import PolicyError

log = logging.getLogger("hallmark.api")


@dataclass
class GenerationContext:
    """What the generation routes need, built once by the app factory."""

    pipeline: GuardedPipeline
    jobs: JobStore
    queue: JobQueue
    settings: JobSettings

    @property
    def store(self) -> AuditStore:
        return self.jobs.store


class GenerationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=20000, description="What the video should show.")
    height: int = Field(480, ge=128, le=4320, description="The short side in pixels (480 for 480p).")
    aspect_ratio: Literal["landscape", "portrait", "square"] = "landscape"
    duration_s: float = Field(2.0, gt=0, le=600, description="Length of the clip in seconds.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Random when not given.")
    user: str = Field(
        "default",
        min_length=1,
        max_length=128,
        pattern=r"^[\w.@:-]+$",
        description="Your end user: quotas are per user.",
    )
    image: str | None = Field(None, description="An input image (PNG, JPEG or WebP), base64.")
    visible_watermark: bool = Field(True, description="False only where the key's tier allows removing it.")


class JobLinks(BaseModel):
    self: str
    cancel: str
    video: str | None = None
    report: str | None = None


class JobOut(BaseModel):
    id: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float
    stage: str | None
    tier: str
    user: str
    request_id: str = Field(description="The generation id of its audit record.")
    reason: str | None
    attempts: int
    cancel_requested: bool
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    links: JobLinks


class Refusal(BaseModel):
    detail: str
    request_id: str = Field(description="The generation id of the audit record of this refusal.")
    stage: str | None
    category: str | None = None
    classifier: str | None = None
    score: float | None = None
    threshold: float | None = None
    policy: str


class QuotaRefusal(BaseModel):
    detail: str
    kind: Literal["month", "concurrent"]
    limit: int
    resets_at: dt.datetime | None


def build_router(get_context: Callable[[], GenerationContext], max_body_bytes: int) -> APIRouter:
    """`max_body_bytes` bounds a request body (the JSON with a base64 image), counted as it arrives."""
    router = APIRouter(prefix="/v1/generations", tags=["generations"], max_body_size=max_body_bytes)
    Context = Annotated[GenerationContext, Depends(get_context)]
    Caller = Annotated[Principal, Depends(principal_dependency(lambda: get_context().store))]

    def generator(caller: Caller) -> Principal:
        if caller.role != "generator":
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"needs a generator key; this is a {caller.role} key"
            )
        return caller

    Generator = Annotated[Principal, Depends(generator)]

    def out(request: Request, job: GenerationJob) -> JobOut:
        base = str(request.url_for("get_generation", job_id=job.id))
        done = job.state == "succeeded"
        return JobOut(
            id=job.id,
            state=job.state,
            progress=job.progress,
            stage=job.stage,
            tier=job.tier,
            user=job.user,
            request_id=job.generation_id,
            reason=job.reason,
            attempts=job.attempts,
            cancel_requested=job.cancel_requested,
            created_at=_aware(job.created_at),
            started_at=_aware(job.started_at),
            finished_at=_aware(job.finished_at),
            links=JobLinks(
                self=base,
                cancel=f"{base}/cancel",
                video=f"{base}/video" if done else None,
                report=f"{base}/report" if done else None,
            ),
        )

    def own_job(context: GenerationContext, caller: Principal, job_id: str) -> GenerationJob:
        try:
            job = context.jobs.get(job_id)
        except JobNotFound:
            job = None
        if job is None or job.tenant != caller.tenant:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
        return job

    @router.post(
        "",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobOut,
        responses={
            200: {"model": JobOut, "description": "an idempotent retry: the job it made"},
            400: {"model": Refusal, "description": "refused by the policy (audited)"},
            409: {"description": "idempotency key reused for another request"},
            422: {"description": "a field out of bounds, named"},
            429: {"model": QuotaRefusal, "description": "over quota"},
        },
        summary="Queue a generation",
    )
    def create_generation(
        body: GenerationCreate,
        request: Request,
        response: Response,
        context: Context,
        caller: Generator,
        idempotency_key: Annotated[
            str | None, Header(max_length=128, description="Retries with the same key return the same job.")
        ] = None,
    ) -> JobOut | JSONResponse:
        policy = context.pipeline.policy
        tier_name = caller.tier or policy.default_tier
        try:
            tier = policy.tier(tier_name)
        except PolicyError as exc:  # the key names a tier the policy no longer has
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
        if len(body.prompt) > policy.prompt.max_length:
            raise _field(
                "prompt", f"{len(body.prompt)} characters; the policy allows {policy.prompt.max_length}"
            )
        image_bytes, image_type, pixels = _image(body.image, policy)
        _check_tier(body, tier_name, tier.max_height, tier.max_seconds, tier.visible_watermark_removable)
        fps = context.settings.fps
        num_frames = max(round(body.duration_s * fps), 1)
        if num_frames < MIN_FRAMES:
            raise _field("duration_s", f"at least {MIN_FRAMES / fps:g} s ({MIN_FRAMES} frames at {fps} fps)")
        width, height = frame_size(body.height, body.aspect_ratio)
        seed = body.seed if body.seed is not None else secrets.randbelow(2**32)
        params = {
            "width": width,
            "height": height,
            "num_frames": num_frames,
            "fps": fps,
            "steps": context.settings.steps,
            "seed": seed,
            "visible_watermark": body.visible_watermark,
        }
        fields = body.model_dump(exclude={"image"})
        draft = JobDraft(
            tenant=caller.tenant,
            user=body.user,
            key_id=caller.key_id,
            tier=tier_name,
            params=params,
            prompt=body.prompt,
            request_sha256=request_digest(fields, image_bytes),
            image=image_bytes,
            image_type=image_type,
            image_name="input" if image_bytes else None,
            idempotency_key=idempotency_key,
        )
        gen_request = GenerationRequest(
            prompt=body.prompt,
            output=context.settings.artifacts / "gate.mp4",
            image=pixels,
            num_frames=num_frames,
            height=height,
            width=width,
            fps=fps,
            seed=seed,
            tenant=caller.tenant,
            user=body.user,
            tier=tier_name,
            visible_watermark=body.visible_watermark,
        )
        try:
            refusal, job, created = submit(context.pipeline, context.jobs, context.queue, draft, gen_request)
        except QuotaExceeded as exc:
            metrics.QUOTA_REFUSALS.labels(exc.kind).inc()
            headers = {}
            if exc.resets_at is not None:
                headers["Retry-After"] = str(
                    max(1, int((exc.resets_at - dt.datetime.now(dt.UTC)).total_seconds()))
                )
            return JSONResponse(
                QuotaRefusal(
                    detail=str(exc), kind=exc.kind, limit=exc.limit, resets_at=exc.resets_at
                ).model_dump(mode="json"),
                status.HTTP_429_TOO_MANY_REQUESTS,
                headers=headers,
            )
        except IdempotencyConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        except Exception as exc:  # the queue could not be told: the sweep hands the job over later
            log.exception("queueing failed", extra={"error": type(exc).__name__})
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the job queue is unavailable; retry with the same Idempotency-Key",
            ) from exc
        if refusal is not None:
            blocking = first_blocking(refusal.verdicts)
            if refusal.status == "blocked" and blocking is not None:
                metrics.BLOCKS.labels(refusal.stage, blocking.category).inc()
                body_out = Refusal(
                    detail=refusal.reason,
                    request_id=refusal.generation_id,
                    stage=refusal.stage,
                    category=blocking.category,
                    classifier=blocking.classifier,
                    score=round(blocking.score, 4),
                    threshold=blocking.threshold,
                    policy=refusal.policy,
                )
                return JSONResponse(body_out.model_dump(mode="json"), status.HTTP_400_BAD_REQUEST)
            body_out = Refusal(
                detail=refusal.reason or "refused",
                request_id=refusal.generation_id,
                stage=refusal.stage,
                policy=refusal.policy,
            )
            # The request's own fields are the client's to fix; a classifier that failed is ours (fail closed).
            failed_here = refusal.stage != "request"
            code = (
                status.HTTP_503_SERVICE_UNAVAILABLE if failed_here else status.HTTP_422_UNPROCESSABLE_CONTENT
            )
            return JSONResponse(body_out.model_dump(mode="json"), code)
        if not created:
            response.status_code = status.HTTP_200_OK
        else:
            metrics.JOBS_CREATED.labels(tier_name).inc()
        return out(request, job)

    @router.get(
        "/{job_id}", response_model=JobOut, name="get_generation", summary="A job's state and progress"
    )
    def get_generation(job_id: str, request: Request, context: Context, caller: Generator) -> JobOut:
        return out(request, own_job(context, caller, job_id))

    @router.post(
        "/{job_id}/cancel",
        response_model=JobOut,
        summary="Cancel a queued or running job",
        responses={409: {"description": "the job has already ended"}},
    )
    def cancel_generation(job_id: str, request: Request, context: Context, caller: Generator) -> JobOut:
        job = own_job(context, caller, job_id)
        if job.state in ("succeeded", "failed"):
            raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} has already {job.state}")
        return out(request, cancel(context.pipeline, context.jobs, job_id, context.settings))

    @router.get(
        "/{job_id}/video",
        response_class=FileResponse,
        summary="The signed MP4 of a succeeded job",
        responses={200: {"content": {"video/mp4": {}}}, 409: {"description": "not succeeded (yet)"}},
    )
    def generation_video(job_id: str, context: Context, caller: Generator) -> FileResponse:
        job = own_job(context, caller, job_id)
        path = _artifact(job, job.output_path)
        return FileResponse(path, media_type="video/mp4", filename=f"{job.id}.mp4")

    @router.get(
        "/{job_id}/report",
        summary="The provenance report of a succeeded job",
        responses={409: {"description": "not succeeded (yet)"}},
    )
    def generation_report(job_id: str, context: Context, caller: Generator) -> dict:
        """From the job's audit record: policy, tier, model, every verdict, watermark, C2PA manifest."""
        job = own_job(context, caller, job_id)
        if job.state != "succeeded":
            raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.state}, not succeeded")
        store = context.store
        record = store.get(job.generation_id)
        return {
            "job_id": job.id,
            "generation_id": record.generation_id,
            "tenant": record.tenant,
            "user": record.user,
            "tier": record.tier,
            "policy": f"{record.policy_name}@{record.policy_version}",
            "model": f"{record.model_id} {record.model_version}",
            "created_at": _aware(record.created_at).isoformat(),
            "output_sha256": record.output_sha256,
            "flagged": record.flagged,
            "watermark": {
                "method": record.watermark_method,
                "key_id": record.watermark_key_id,
                "payload": record.watermark_payload,
            },
            "c2pa_manifest": record.manifest_label,
            "verdicts": [verdict_view(v) for v in store.verdicts(record.seq)],
            "audit_record": record.seq,
        }

    return router


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back without their zone (chain.utc); an unset one stays None."""
    return chain.utc(value) if value is not None else None


def _artifact(job: GenerationJob, path: str | None) -> Path:
    if job.state != "succeeded" or not path:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.state}, not succeeded")
    if not Path(path).is_file():
        raise HTTPException(status.HTTP_410_GONE, f"job {job.id}'s file is no longer kept")
    return Path(path)


def _field(name: str, message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"field '{name}': {message}")


def _check_tier(
    body: GenerationCreate, name: str, max_height: int, max_seconds: float, removable: bool
) -> None:
    if body.height > max_height:
        raise _field("height", f"tier {name!r} allows up to {max_height}p, not {body.height}p")
    if body.duration_s > max_seconds:
        raise _field("duration_s", f"tier {name!r} allows up to {max_seconds:g} s, not {body.duration_s:g} s")
    if not body.visible_watermark and not removable:
        raise _field("visible_watermark", f"tier {name!r} does not allow removing the visible watermark")


_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def _image(encoded: str | None, policy) -> tuple[bytes | None, str | None, np.ndarray | None]:
    """The uploaded image's bytes, type and pixels, within the policy's size and types; 422 otherwise."""
    if encoded is None:
        return None, None, None
    limit = int(policy.image.max_megabytes * 1024 * 1024)
    if len(encoded) > limit * 4 // 3 + 8:
        raise _field("image", f"larger than the policy's {policy.image.max_megabytes:g} MB")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _field("image", "not base64") from exc
    kind = next((t for magic, t in _MAGIC.items() if data.startswith(magic)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "image/webp"
    if kind is None or kind not in policy.image.types:
        raise _field("image", f"must be one of {', '.join(policy.image.types)}")
    try:
        pixels = decode_image(data, policy.image.max_pixels)
    except ValueError as exc:
        raise _field("image", str(exc)) from exc
    return data, kind, pixels
