"""Generation jobs in the database: state, quotas, idempotency, leases.

The job tables are defined with the rest of the schema (audit/models.py: one database, one
migration history); this module is the only one that reads or writes them.

A job row is created, with its per-user quota checked, in one serialised transaction (SQLite:
the store's BEGIN IMMEDIATE writer; PostgreSQL: an advisory lock per tenant and user), so
concurrent requests cannot overrun a quota. Workers `claim` a job before running it: a job
whose worker stopped sending heartbeats can be claimed again, so a killed worker's job is
retried, never silently lost. Each job's generation id is fixed when it is created and the
audit store allows one record per generation id, so a job never gets two outcome records.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from audit import chain
from audit.models import GenerationJob, GenerationRecord, JobInput
from audit.store import AuditError, AuditStore


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


STATES = tuple(JobState)
FINAL = (JobState.succeeded, JobState.failed, JobState.cancelled)
ACTIVE = (JobState.queued, JobState.running)


class JobNotFound(AuditError):
    pass


class IdempotencyConflict(AuditError):
    """The idempotency key was used before for a different request."""


class QuotaExceeded(AuditError):
    def __init__(self, message: str, kind: str, limit: int, resets_at: dt.datetime | None) -> None:
        super().__init__(message)
        self.kind, self.limit, self.resets_at = kind, limit, resets_at


@dataclass(frozen=True)
class JobDraft:
    tenant: str
    user: str
    key_id: str | None
    tier: str
    params: dict[str, Any]  # width, height, num_frames, fps, steps, seed, visible_watermark
    prompt: str
    request_sha256: str
    image: bytes | None = None
    image_type: str | None = None
    image_name: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Limits:
    per_month: int
    concurrent: int


@dataclass(frozen=True)
class Lease:
    held: bool  # the job is still this run's (another worker has not taken it over)
    cancel_requested: bool


@dataclass(frozen=True)
class Claim:
    job: GenerationJob
    inputs: JobInput | None
    exhausted: bool = False  # claimed too many times: the caller records the failure


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def month_bounds(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


class JobStore:
    """Job rows in the audit database (the one database of a deployment)."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    # ---- creating -------------------------------------------------------------------------

    def create(
        self, draft: JobDraft, limits: Limits, now: dt.datetime | None = None
    ) -> tuple[GenerationJob, bool]:
        """Queue a job, or return the one an earlier request with the same idempotency key made.

        Returns (job, created). Raises IdempotencyConflict when the key was used for another
        request, QuotaExceeded when the user's monthly or concurrent limit is reached."""
        now = now or utcnow()
        with self.store.transaction() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                    {"k": json.dumps([draft.tenant, draft.user])},
                )
            if draft.idempotency_key:
                existing = self._by_key(conn, draft.tenant, draft.idempotency_key)
                if existing is not None:
                    if existing.request_sha256 != draft.request_sha256:
                        raise IdempotencyConflict(
                            f"idempotency key {draft.idempotency_key!r} was used for a different request "
                            f"(job {existing.id})"
                        )
                    return existing, False
            start, end = month_bounds(now)
            J = GenerationJob
            mine = (J.tenant == draft.tenant) & (J.user == draft.user)
            used = conn.execute(select(func.count()).where(mine & (J.created_at >= start))).scalar_one()
            if used >= limits.per_month:
                raise QuotaExceeded(
                    f"monthly limit of {limits.per_month} generations reached for user "
                    f"{draft.user!r}; it resets at {end.isoformat()}",
                    "month",
                    limits.per_month,
                    end,
                )
            active = conn.execute(select(func.count()).where(mine & J.state.in_(ACTIVE))).scalar_one()
            if active >= limits.concurrent:
                raise QuotaExceeded(
                    f"{limits.concurrent} jobs of user {draft.user!r} are already queued or running; "
                    "retry when one finishes",
                    "concurrent",
                    limits.concurrent,
                    None,
                )
            row = {
                "id": uuid.uuid4().hex,
                "tenant": draft.tenant,
                "user": draft.user,
                "key_id": draft.key_id,
                "tier": draft.tier,
                "state": JobState.queued,
                "progress": 0.0,
                "idempotency_key": draft.idempotency_key,
                "request_sha256": draft.request_sha256,
                "params": json.dumps(draft.params, sort_keys=True),
                "attempts": 0,
                "cancel_requested": False,
                "generation_id": str(uuid.uuid4()),
                "created_at": now,
            }
            try:
                conn.execute(insert(GenerationJob), [row])
                conn.execute(
                    insert(JobInput),
                    [
                        {
                            "job_id": row["id"],
                            "prompt": draft.prompt,
                            "image": draft.image,
                            "image_type": draft.image_type,
                            "image_name": draft.image_name,
                        }
                    ],
                )
            except IntegrityError as exc:  # the same key from another user of the tenant, at the same moment
                raise IdempotencyConflict(f"idempotency key {draft.idempotency_key!r} is in use") from exc
        return self.get(row["id"]), True

    # ---- reading --------------------------------------------------------------------------

    def get(self, job_id: str) -> GenerationJob:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(GenerationJob).where(GenerationJob.id == job_id)).first()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        return GenerationJob(**row._mapping)

    def inputs(self, job_id: str) -> JobInput | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(JobInput).where(JobInput.job_id == job_id)).first()
        return JobInput(**row._mapping) if row else None

    def counts(self) -> dict[str, int]:
        """Jobs per state (queue depth is `queued`)."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(GenerationJob.state, func.count()).group_by(GenerationJob.state)).all()
        return {state: 0 for state in STATES} | {state: n for state, n in rows}

    def unfinished(self, idle_for: dt.timedelta, now: dt.datetime | None = None) -> list[GenerationJob]:
        """Queued or running jobs nobody has touched for `idle_for` (lost by a crash), and final jobs
        whose outcome record is missing (a crash between the two writes). Queued jobs found are
        stamped, so a job waiting its turn is requeued once per idle period, not at every sweep."""
        now = now or utcnow()
        cutoff = now - idle_for
        J = GenerationJob
        touched = func.coalesce(J.heartbeat_at, J.created_at)  # a queued job's heartbeat: its last requeue
        with self.store.transaction() as conn:
            stale = conn.execute(select(J).where(J.state.in_(ACTIVE) & (touched < cutoff))).all()
            unrecorded = conn.execute(
                select(J).where(
                    J.state.in_(FINAL)
                    & (J.finished_at < cutoff)
                    & J.id.in_(select(JobInput.job_id))
                    & ~J.generation_id.in_(select(GenerationRecord.generation_id))
                )
            ).all()
            queued = [r.id for r in stale if r.state == JobState.queued]
            if queued:
                conn.execute(update(J).where(J.id.in_(queued)).values(heartbeat_at=now))
        return [GenerationJob(**r._mapping) for r in [*stale, *unrecorded]]

    # ---- running --------------------------------------------------------------------------

    def claim(self, job_id: str, stale_after: dt.timedelta, max_attempts: int) -> Claim | None:
        """Take a job to run it. None when it has ended, or another worker holds a fresh lease."""
        now = utcnow()
        with self.store.transaction() as conn:
            job = _locked(conn, job_id)
            if job is None or job.state in FINAL:
                return None
            touched = job.heartbeat_at or job.started_at
            lease = chain.utc(touched) if touched is not None else None
            if job.state == JobState.running and lease is not None and now - lease < stale_after:
                return None
            inputs = conn.execute(select(JobInput).where(JobInput.job_id == job_id)).first()
            inputs = JobInput(**inputs._mapping) if inputs else None
            if job.attempts >= max_attempts:  # leased too, so that one run records the failure
                conn.execute(update(GenerationJob).where(GenerationJob.id == job_id).values(heartbeat_at=now))
                return Claim(job, inputs, exhausted=True)
            conn.execute(
                update(GenerationJob)
                .where(GenerationJob.id == job_id)
                .values(state=JobState.running, attempts=job.attempts + 1, started_at=now, heartbeat_at=now)
            )
            job.state, job.attempts, job.started_at, job.heartbeat_at = (
                JobState.running,
                job.attempts + 1,
                now,
                now,
            )
        return Claim(job, inputs)

    def heartbeat(self, job_id: str, attempt: int, progress: float, stage: str | None) -> Lease:
        """Record progress and renew the lease of the run that claimed `attempt`. Says whether the
        job is still this run's, and whether its cancellation was requested."""
        J = GenerationJob
        mine = (J.id == job_id) & (J.state == JobState.running) & (J.attempts == attempt)
        with self.store.engine.begin() as conn:
            held = (
                conn.execute(
                    update(J)
                    .where(mine)
                    .values(progress=round(progress, 4), stage=stage, heartbeat_at=utcnow())
                ).rowcount
                == 1
            )
            cancel = conn.execute(select(J.cancel_requested).where(J.id == job_id)).scalar()
        return Lease(held=held, cancel_requested=bool(cancel))

    def finish(
        self, job_id: str, state: str, reason: str | None = None, output_path: str | None = None
    ) -> None:
        """The job's final state; its inputs are deleted (the audit record holds them now)."""
        if state not in FINAL:
            raise ValueError(f"not a final state: {state}")
        with self.store.engine.begin() as conn:
            values: dict[str, Any] = {
                "state": state,
                "reason": reason,
                "output_path": output_path,
                "finished_at": utcnow(),
            }
            if state == JobState.succeeded:
                values["progress"] = 1.0
            conn.execute(update(GenerationJob).where(GenerationJob.id == job_id).values(**values))
            conn.execute(delete(JobInput).where(JobInput.job_id == job_id))

    def request_cancel(self, job_id: str) -> tuple[GenerationJob, JobInput | None]:
        """Cancel a job: a queued one is cancelled at once (the caller records it, then calls
        `finish`); a running one is asked to stop at its next progress report."""
        with self.store.transaction() as conn:
            job = _locked(conn, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            inputs = None
            if job.state == JobState.queued:
                conn.execute(
                    update(GenerationJob)
                    .where(GenerationJob.id == job_id)
                    .values(state=JobState.cancelled, cancel_requested=True, finished_at=utcnow())
                )
                found = conn.execute(select(JobInput).where(JobInput.job_id == job_id)).first()
                inputs = JobInput(**found._mapping) if found else None
                job.state = JobState.cancelled
            elif job.state == JobState.running:
                conn.execute(
                    update(GenerationJob).where(GenerationJob.id == job_id).values(cancel_requested=True)
                )
            if job.state in (JobState.cancelled, JobState.running):
                job.cancel_requested = True
        return job, inputs

    @staticmethod
    def _by_key(conn, tenant: str, key: str) -> GenerationJob | None:
        row = conn.execute(
            select(GenerationJob).where(
                (GenerationJob.tenant == tenant) & (GenerationJob.idempotency_key == key)
            )
        ).first()
        return GenerationJob(**row._mapping) if row else None


def _locked(conn, job_id: str) -> GenerationJob | None:
    """The job's row, locked for this transaction (SQLite: the writer already holds the database)."""
    query = select(GenerationJob).where(GenerationJob.id == job_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return GenerationJob(**row._mapping) if row else None
