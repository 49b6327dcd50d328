"""The generation service under /v1/generations, for platform teams (generator API keys).

POST answers at once: the request is checked against the policy (tier limits, sizes, the input
image) before any model loads, then the prompt and the image are screened, so a refused request
gets its answer (and its audit record) synchronously; an accepted one is queued and answered
with its job. GET shows the job's state and progress; cancel stops it; when it has succeeded,
/video is the signed MP4 and /report its provenance report.
"""

import base64
import binascii
import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from audit import chain
from audit.deps import Generator, Store
from audit.keys import Principal
from audit.models import GenerationJob, Outcome
from audit.queries import verdict_view, watermark_view
from generator.pipeline import GenerationResult, GuardedPipeline, new_result, refuse
from generator.request import (
    GenerationRequest,
    InputImage,
    Problem,
    RequestRefused,
    check,
    frame_size,
    read_image,
)
from jobs import metrics
from jobs.runner import JobQueue, JobSettings, cancel, request_digest, submit, to_draft
from jobs.store import FINAL, IdempotencyConflict, JobNotFound, JobState, JobStore, QuotaExceeded
from moderation import first_blocking
from policy import Policy

log = logging.getLogger("hallmark.api")

router = APIRouter(prefix="/v1/generations", tags=["generations"])

# The request fields of `generator.request.check` under the names this API gives them.
API_FIELDS = {"num_frames": "duration_s", "fps": "duration_s", "width": "height"}


@dataclass(frozen=True)
class GenerationConfig:
    """What a request is checked with before the pipeline loads (built by the app factory)."""

    policy: Policy
    jobs: JobSettings
    model_id: str  # the configured model, named in the record of a request refused before it loaded


@dataclass(frozen=True)
class GenerationContext:
    """The loaded service: the pipeline, the job store and the queue (built on first use)."""

    pipeline: GuardedPipeline
    jobs: JobStore
    queue: JobQueue
    settings: JobSettings


def get_config(request: Request) -> GenerationConfig:
    return request.app.state.generation_config


def get_context(request: Request) -> GenerationContext:
    """Loads the pipeline on first use."""
    return request.app.state.generation()


Config = Annotated[GenerationConfig, Depends(get_config)]
Context = Annotated[GenerationContext, Depends(get_context)]


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
    config: Config,
    store: Store,
    caller: Generator,
    idempotency_key: Annotated[
        str | None, Header(max_length=128, description="Retries with the same key return the same job.")
    ] = None,
) -> JobOut | JSONResponse:
    policy = config.policy
    tier_name = caller.tier or policy.default_tier
    if tier_name not in policy.tiers:  # the key names a tier the policy no longer has
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"policy {policy.label} has no tier {tier_name!r}")
    image_bytes, image = _image(body.image, policy)
    generation = _generation_request(body, caller, tier_name, config.jobs, image)
    problems = check(generation, policy)
    if problems:  # refused and recorded before any model loads
        result = new_result(generation, policy, config.model_id, "not loaded")
        refused = refuse(store, policy, result, generation, problems)
        return _refusal(refused, status.HTTP_422_UNPROCESSABLE_CONTENT, _named(problems))
    draft = to_draft(
        generation,
        key_id=caller.key_id,
        request_sha256=request_digest(body.model_dump(exclude={"image"}), image_bytes),
        image=image_bytes,
        idempotency_key=idempotency_key,
    )
    context = get_context(request)  # the pipeline loads here, on the first accepted request
    try:
        submitted = submit(context.pipeline, context.jobs, context.queue, draft, generation)
    except QuotaExceeded as exc:
        return _quota_refusal(exc)
    except IdempotencyConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except Exception as exc:  # the queue could not be told: the sweep hands the job over later
        log.exception("queueing failed", extra={"error": type(exc).__name__})
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the job queue is unavailable; retry with the same Idempotency-Key",
        ) from exc
    if submitted.refusal is not None:
        # A classifier that failed is ours, not the client's (fail closed): 503.
        code = REFUSAL_CODES.get(submitted.refusal.status, status.HTTP_503_SERVICE_UNAVAILABLE)
        return _refusal(submitted.refusal, code)
    if submitted.created:
        metrics.JOBS_CREATED.labels(tier_name).inc()
    else:
        response.status_code = status.HTTP_200_OK
    return _out(request, submitted.job)


REFUSAL_CODES = {
    Outcome.blocked: status.HTTP_400_BAD_REQUEST,
    Outcome.refused: status.HTTP_422_UNPROCESSABLE_CONTENT,
}


@router.get("/{job_id}", response_model=JobOut, name="get_generation", summary="A job's state and progress")
def get_generation(job_id: str, request: Request, store: Store, caller: Generator) -> JobOut:
    return _out(request, _own_job(JobStore(store), caller, job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a queued or running job",
    responses={409: {"description": "the job has already ended"}},
)
def cancel_generation(job_id: str, request: Request, context: Context, caller: Generator) -> JobOut:
    job = _own_job(context.jobs, caller, job_id)
    if job.state in FINAL and job.state != JobState.cancelled:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} has already {job.state}")
    return _out(request, cancel(context.pipeline, context.jobs, job_id, context.settings))


@router.get(
    "/{job_id}/video",
    response_class=FileResponse,
    summary="The signed MP4 of a succeeded job",
    responses={200: {"content": {"video/mp4": {}}}, 409: {"description": "not succeeded (yet)"}},
)
def generation_video(job_id: str, store: Store, caller: Generator) -> FileResponse:
    job = _own_job(JobStore(store), caller, job_id)
    path = _artifact(job, job.output_path)
    return FileResponse(path, media_type="video/mp4", filename=f"{job.id}.mp4")


@router.get(
    "/{job_id}/report",
    summary="The provenance report of a succeeded job",
    responses={409: {"description": "not succeeded (yet)"}},
)
def generation_report(job_id: str, store: Store, caller: Generator) -> dict:
    """From the job's audit record: policy, tier, model, every verdict, watermark, C2PA manifest."""
    job = _own_job(JobStore(store), caller, job_id)
    if job.state != JobState.succeeded:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.state}, not succeeded")
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
        "watermark": watermark_view(
            record.watermark_payload, record.watermark_method, record.watermark_key_id
        ),
        "c2pa_manifest": record.manifest_label,
        "verdicts": [verdict_view(v) for v in store.verdicts(record.seq)],
        "audit_record": record.seq,
    }


def _out(request: Request, job: GenerationJob) -> JobOut:
    base = str(request.url_for("get_generation", job_id=job.id))
    done = job.state == JobState.succeeded
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


def _own_job(jobs: JobStore, caller: Principal, job_id: str) -> GenerationJob:
    try:
        job = jobs.get(job_id)
    except JobNotFound:
        job = None
    if job is None or job.tenant != caller.tenant:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    return job


def _generation_request(
    body: GenerationCreate, caller: Principal, tier: str, settings: JobSettings, image: InputImage | None
) -> GenerationRequest:
    """The request in the pipeline's terms: a duration becomes frames, a short side and an aspect
    ratio become a frame size."""
    width, height = frame_size(body.height, body.aspect_ratio)
    return GenerationRequest(
        prompt=body.prompt,
        image=image.pixels if image else None,
        image_file=image.ingredient if image else None,
        num_frames=max(round(body.duration_s * settings.fps), 1),
        height=height,
        width=width,
        steps=settings.steps,
        seed=body.seed if body.seed is not None else secrets.randbelow(2**32),
        fps=settings.fps,
        tenant=caller.tenant,
        user=body.user,
        tier=tier,
        visible_watermark=body.visible_watermark,
    )


def _quota_refusal(exc: QuotaExceeded) -> JSONResponse:
    metrics.QUOTA_REFUSALS.labels(exc.kind).inc()
    headers = {}
    if exc.resets_at is not None:
        seconds = (exc.resets_at - dt.datetime.now(dt.UTC)).total_seconds()
        headers["Retry-After"] = str(max(1, int(seconds)))
    body = QuotaRefusal(detail=str(exc), kind=exc.kind, limit=exc.limit, resets_at=exc.resets_at)
    return JSONResponse(body.model_dump(mode="json"), status.HTTP_429_TOO_MANY_REQUESTS, headers=headers)


def _refusal(result: GenerationResult, code: int, detail: str | None = None) -> JSONResponse:
    """A refused request's answer, naming its audit record (and, when blocked, the verdict)."""
    body = Refusal(
        detail=detail or result.reason or "refused",
        request_id=result.generation_id,
        stage=result.stage,
        policy=result.policy,
    )
    blocking = first_blocking(result.verdicts) if result.status == Outcome.blocked else None
    if blocking is not None:
        metrics.BLOCKS.labels(result.stage, blocking.category).inc()
        body.category, body.classifier = blocking.category, blocking.classifier
        body.score, body.threshold = round(blocking.score, 4), blocking.threshold
    return JSONResponse(body.model_dump(mode="json"), code)


def _named(problems: list[Problem]) -> str:
    return "; ".join(f"field '{API_FIELDS.get(p.field, p.field)}': {p.message}" for p in problems)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back without their zone (chain.utc); an unset one stays None."""
    return chain.utc(value) if value is not None else None


def _artifact(job: GenerationJob, path: str | None) -> Path:
    if job.state != JobState.succeeded or not path:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.state}, not succeeded")
    if not Path(path).is_file():
        raise HTTPException(status.HTTP_410_GONE, f"job {job.id}'s file is no longer kept")
    return Path(path)


def _image(encoded: str | None, policy: Policy) -> tuple[bytes | None, InputImage | None]:
    """The uploaded image's bytes and pixels, within the policy's size and types; 422 otherwise."""
    if encoded is None:
        return None, None
    limit = int(policy.image.max_megabytes * 1024 * 1024)
    if len(encoded) > limit * 4 // 3 + 8:
        raise _field("image", f"larger than the policy's {policy.image.max_megabytes:g} MB")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _field("image", "not base64") from exc
    try:
        return data, read_image(data, policy)
    except RequestRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _named(exc.problems)) from exc


def _field(name: str, message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"field '{name}': {message}")
