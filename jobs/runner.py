"""Running generation jobs: submit, run, cancel, recover, with a heartbeat on every running job.

    submit: check -> gate (prompt, image; a refusal is recorded) -> quota -> queue
    run:    claim (lease) -> pipeline (which writes the one audit record) -> final state

The queue (jobs/queues.py) carries job ids only, and `run_job` is the same code whichever queue
runs it. The database is the source of truth: a job whose worker died is claimed again once its
lease lapses, and `recover` requeues what a crash left behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from audit.models import GenerationJob, JobInput, Outcome
from audit.store import AuditError
from generator.pipeline import STAGES, Abandoned, Cancelled, GenerationResult, GuardedPipeline
from generator.request import GenerationRequest, RequestRefused, read_image
from jobs import metrics
from jobs.store import ACTIVE, Claim, JobDraft, JobState, JobStore, Lease, Limits
from policy import Policy

log = logging.getLogger("hallmark.jobs")

# The job state that each outcome of the pipeline gives a job.
FINAL_STATE = {
    Outcome.released: JobState.succeeded,
    Outcome.blocked: JobState.failed,
    Outcome.refused: JobState.failed,
    Outcome.error: JobState.failed,
    Outcome.cancelled: JobState.cancelled,
}


class JobQueue(Protocol):
    def submit(self, job_id: str) -> None: ...


@dataclass(frozen=True)
class JobSettings:
    artifacts: Path  # where finished videos and reports are written (shared by API and workers)
    lease: dt.timedelta = dt.timedelta(seconds=60)  # a running job without a heartbeat this long is lost
    max_attempts: int = 3
    fps: int = 8
    steps: int = 8


def request_digest(fields: dict, image: bytes | None) -> str:
    """What an idempotent retry must repeat exactly."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    digest.update(image or b"")
    return digest.hexdigest()


def to_draft(
    request: GenerationRequest,
    key_id: str | None,
    request_sha256: str,
    image: bytes | None = None,
    idempotency_key: str | None = None,
) -> JobDraft:
    """The job row for a checked request (`to_request` turns it back into the request)."""
    return JobDraft(
        tenant=request.tenant,
        user=request.user,
        key_id=key_id,
        tier=request.tier,
        params={
            "width": request.width,
            "height": request.height,
            "num_frames": request.num_frames,
            "fps": request.fps,
            "steps": request.steps,
            "seed": request.seed,
            "visible_watermark": request.visible_watermark,
        },
        prompt=request.prompt,
        request_sha256=request_sha256,
        image=image,
        image_type=request.image_file.media_type if request.image_file else None,
        image_name="input" if image else None,
        idempotency_key=idempotency_key,
    )


def to_request(
    job: GenerationJob, inputs: JobInput, artifacts: Path, policy: Policy, read_pixels: bool = True
) -> GenerationRequest:
    """The request a job was queued with (RequestRefused if its image no longer passes the
    policy). `read_pixels=False` leaves the image out, to record a job that never ran whatever
    its image holds."""
    params = json.loads(job.params)
    image = None
    if inputs.image is not None and read_pixels:
        image = read_image(inputs.image, policy, inputs.image_name or "input")
    return GenerationRequest(
        prompt=inputs.prompt,
        output=artifacts / f"{job.id}.mp4",
        image=image.pixels if image else None,
        image_file=image.ingredient if image else None,
        num_frames=params["num_frames"],
        height=params["height"],
        width=params["width"],
        steps=params["steps"],
        seed=params["seed"],
        fps=params["fps"],
        tenant=job.tenant,
        user=job.user,
        overwrite=True,
        tier=job.tier,
        visible_watermark=params["visible_watermark"],
        generation_id=job.generation_id,
    )


@dataclass(frozen=True)
class Submission:
    """What `submit` did: refused the request (recorded), or queued a job (or found the one an
    earlier request with the same idempotency key made: `created` is False)."""

    refusal: GenerationResult | None = None
    job: GenerationJob | None = None
    created: bool = False


def submit(
    pipeline: GuardedPipeline, jobs: JobStore, queue: JobQueue, draft: JobDraft, request: GenerationRequest
) -> Submission:
    """Gate a request and queue it; raises QuotaExceeded or IdempotencyConflict."""
    tier = pipeline.policy.tier(draft.tier)
    refusal = pipeline.gate(request)
    if refusal is not None:
        return Submission(refusal=refusal)
    job, created = jobs.create(draft, Limits(tier.generations_per_month, tier.concurrent_jobs))
    if created:
        queue.submit(job.id)
    return Submission(job=job, created=created)


def cancel(pipeline: GuardedPipeline, jobs: JobStore, job_id: str, settings: JobSettings) -> GenerationJob:
    """Cancel a job. A queued one is recorded as cancelled now; a running one stops at its next step."""
    job, inputs = jobs.request_cancel(job_id)
    if inputs is not None:  # it was queued: nothing will run it, so record it here
        _record_unrun(
            pipeline, jobs, job, inputs, settings, Outcome.cancelled, "queue", "cancelled before it ran"
        )
    return jobs.get(job_id)


def run_job(pipeline: GuardedPipeline, jobs: JobStore, job_id: str, settings: JobSettings) -> str | None:
    """Run one job to its final state; returns that state, or None when there was nothing to do
    (it ended already, or another worker holds it)."""
    claim = jobs.claim(job_id, settings.lease, settings.max_attempts)
    if claim is None:
        return None
    job = claim.job
    if _finish_from_record(pipeline, jobs, job):  # an earlier run recorded it, then stopped
        return jobs.get(job.id).state
    if claim.inputs is None:  # inputs are deleted only with a final state: a crash between the two
        jobs.finish(job.id, JobState.failed, reason="the job's inputs are gone")
        return JobState.failed
    if claim.exhausted:
        status = Outcome.cancelled if job.cancel_requested else Outcome.error
        reason = f"gave up after {job.attempts} attempts: its worker stopped each time"
        _record_unrun(pipeline, jobs, job, claim.inputs, settings, status, "worker", reason)
        return FINAL_STATE[status]
    return _run(pipeline, jobs, claim, settings)


def _run(pipeline: GuardedPipeline, jobs: JobStore, claim: Claim, settings: JobSettings) -> str | None:
    job = claim.job
    try:
        request = to_request(job, claim.inputs, settings.artifacts, pipeline.policy)
    except RequestRefused as exc:  # the policy changed since it was queued
        _record_unrun(pipeline, jobs, job, claim.inputs, settings, Outcome.refused, "request", str(exc))
        return JobState.failed
    started = time.monotonic()
    beat = _Heartbeat(jobs, job.id, job.attempts, settings.lease / 3)

    def progress(stage: str, done: int, total: int) -> None:
        lease = beat.report(stage, _overall(stage, done, total))
        if not lease.held:
            raise Abandoned()
        if lease.cancel_requested and stage != "audit":  # once released, the outcome stands
            raise Cancelled()

    settings.artifacts.mkdir(parents=True, exist_ok=True)
    try:
        with beat:
            result = pipeline(request, progress=progress)  # records the outcome; an audit failure raises
    except Abandoned:
        log.warning("job taken over by another worker; this run stopped", extra={"job": job.id})
        return None
    except AuditError:  # a record of this generation exists already: another run wrote it
        if _finish_from_record(pipeline, jobs, job):
            return jobs.get(job.id).state
        raise
    state = FINAL_STATE[result.status]
    jobs.finish(
        job.id, state, reason=result.reason, output_path=str(result.output) if result.released else None
    )
    metrics.JOB_SECONDS.labels(state).observe(time.monotonic() - started)
    log.info(
        "job finished",
        extra={
            "job": job.id,
            "state": state,
            "seconds": round(time.monotonic() - started, 3),
            "tenant": job.tenant,
            "tier": job.tier,
        },
    )
    return state


def _finish_from_record(pipeline: GuardedPipeline, jobs: JobStore, job: GenerationJob) -> bool:
    """If the job's one audit record exists, give the job the state it records."""
    record = pipeline.audit.get(job.generation_id)
    if record is None:
        return False
    output = record.output_path if record.status == Outcome.released else None
    jobs.finish(
        job.id, FINAL_STATE.get(record.status, JobState.failed), reason=record.reason, output_path=output
    )
    return True


class _Heartbeat:
    """Renews a running job's lease every `interval` seconds from a thread, whatever the stage
    (a long VAE decode or encode sends no progress), and carries the latest progress."""

    def __init__(self, jobs: JobStore, job_id: str, attempt: int, interval: dt.timedelta) -> None:
        self._jobs, self._job_id, self._attempt = jobs, job_id, attempt
        self._interval = interval.total_seconds()
        self._state: tuple[str | None, float] = (None, 0.0)
        self._lease = Lease(held=True, cancel_requested=False)
        self._sent = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self) -> _Heartbeat:
        threading.Thread(target=self._loop, daemon=True, name=f"heartbeat-{self._job_id[:8]}").start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def report(self, stage: str, progress: float) -> Lease:
        """Progress from the pipeline; sent at once at most twice a second."""
        with self._lock:
            self._state = (stage, progress)
            due = time.monotonic() - self._sent >= 0.5
        return self._send() if due else self._lease

    def _send(self) -> Lease:
        with self._lock:
            stage, progress = self._state
            self._sent = time.monotonic()
        self._lease = self._jobs.heartbeat(self._job_id, self._attempt, progress, stage)
        return self._lease

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._send()
            except Exception:  # a missed beat; the next one may get through
                log.exception("heartbeat failed", extra={"job": self._job_id})


def _record_unrun(
    pipeline: GuardedPipeline,
    jobs: JobStore,
    job: GenerationJob,
    inputs: JobInput,
    settings: JobSettings,
    status: Outcome,
    stage: str,
    reason: str,
) -> None:
    """Record a job that ends without running (a bad image must not stop the record)."""
    if _finish_from_record(pipeline, jobs, job):
        return
    try:
        request = to_request(job, inputs, settings.artifacts, pipeline.policy)
    except RequestRefused:
        request = to_request(job, inputs, settings.artifacts, pipeline.policy, read_pixels=False)
    try:
        pipeline.record_outcome(request, status, stage, reason)
    except AuditError:
        if _finish_from_record(pipeline, jobs, job):
            return
        raise
    jobs.finish(job.id, FINAL_STATE[status], reason=reason)


# The pipeline's stages and roughly how much of a run each takes (generation dominates).
_WEIGHTS = {"generate": 0.8, "frames": 0.1}


def _overall(stage: str, done: int, total: int) -> float:
    order = list(STAGES)
    if stage not in order:
        return 0.0
    before = sum(_WEIGHTS.get(s, 0.1 / 9) for s in order[: order.index(stage)])
    return min(1.0, before + _WEIGHTS.get(stage, 0.1 / 9) * (done / total if total else 0.0))


def recover(pipeline: GuardedPipeline, jobs: JobStore, queue: JobQueue, settings: JobSettings) -> list[str]:
    """After a crash: requeue jobs left queued or running (their lease lapsed), and record the
    outcome of jobs that reached a final state without their record. Returns the job ids."""
    found = jobs.unfinished(settings.lease)
    for job in found:
        try:
            if job.state in ACTIVE:
                queue.submit(job.id)
                continue
            inputs = jobs.inputs(job.id)
            if inputs is not None:
                status = Outcome.cancelled if job.state == JobState.cancelled else Outcome.error
                _record_unrun(
                    pipeline,
                    jobs,
                    job,
                    inputs,
                    settings,
                    status,
                    "queue",
                    job.reason or "recovered after a crash",
                )
        except Exception:  # one job's trouble must not stop the sweep of the others
            log.exception("recovering a job failed", extra={"job": job.id})
    return [job.id for job in found]
