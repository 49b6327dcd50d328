"""sqlmodel tables of the audit log.

Three kinds of rows form one hash chain, ordered by a sequence number `seq` that is shared by all
three tables: generation records, reviewer decisions and redaction events. Chained rows are only
ever inserted. The one thing the code ever deletes is a record's *content* (prompt and input-image
hash, in `record_content`), and only together with a chained redaction event that says so; the
chain covers a salted hash of the content, so it stays verifiable after the content is gone.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Column, DateTime, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def _utc_column(index: bool = False) -> Column:
    # Timezone-aware on every backend: hashes cover these values, so they must round-trip exactly.
    return Column(DateTime(timezone=True), nullable=False, index=index)


class Outcome(StrEnum):
    """A generation's outcome: the status of its audit record."""

    released = "released"  # screened, watermarked, signed and written
    blocked = "blocked"  # a classifier's verdict stopped it
    refused = "refused"  # the request failed its checks (a field out of bounds); nothing ran
    error = "error"  # a stage failed: nothing was released (fail closed)
    cancelled = "cancelled"  # cancelled by its caller before it was released


class ChainHead(SQLModel, table=True):
    """The newest chained row (one row, id 1). Writers lock it to extend the chain."""

    __tablename__ = "chain_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    row_hash: str
    checkpoint_seq: int = 0  # the head covered by the newest signed checkpoint
    # The newest row's created_at: new rows never get an earlier one, so seq order is time order.
    created_at: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class GenerationRecord(SQLModel, table=True):
    """One generation request, allowed or not."""

    __tablename__ = "generation_records"
    # Each list the review API serves sorted (by seq, or by top_score then seq) under its most
    # common equality filter has an index in that order, so a page is read without sorting.
    __table_args__ = (
        Index("ix_records_score", "top_score", "seq"),
        Index("ix_records_review", "needs_review", "top_score", "seq"),
        Index("ix_records_tenant_seq", "tenant", "seq"),
        Index("ix_records_user_seq", "user", "seq"),
        Index("ix_records_status_seq", "status", "seq"),
        Index("ix_records_stage_seq", "blocked_stage", "seq"),
        Index("ix_records_policy_seq", "policy_version", "seq"),
        Index("ix_records_model_seq", "model_id", "seq"),
        Index("ix_records_tenant_score", "tenant", "top_score", "seq"),
        Index("ix_records_status_score", "status", "top_score", "seq"),
    )

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    generation_id: str = Field(index=True, unique=True)
    created_at: dt.datetime = Field(sa_column=_utc_column(index=True))
    tenant: str = "default"
    user: str = "local"
    policy_name: str
    policy_version: str
    model_id: str
    model_version: str
    status: str  # an Outcome
    flagged: bool = False
    needs_review: bool = False  # blocked or flagged: belongs in the review queue until decided
    blocked_stage: str | None = None  # the stage that blocked or failed
    tier: str | None = None  # the policy tier the request ran under (hashed when set)
    reason: str | None = None  # what blocked it, or the error
    top_score: float = 0.0  # the highest verdict score, and where it came from
    top_category: str | None = None
    top_classifier: str | None = None
    output_sha256: str | None = Field(default=None, index=True)
    output_path: str | None = None
    watermark_payload: str | None = Field(default=None, index=True, unique=True)
    watermark_method: str | None = None
    watermark_key_id: int | None = None
    manifest_label: str | None = Field(default=None, index=True)
    content_hash: str  # sha256 over the salted content in record_content
    prev_hash: str
    row_hash: str = Field(unique=True)


class RecordContent(SQLModel, table=True):
    """What a redaction removes: the prompt and the input image's hash."""

    __tablename__ = "record_content"

    record_seq: int = Field(primary_key=True, foreign_key="generation_records.seq")
    salt: str  # random per record: the content hash reveals nothing once the content is gone
    prompt: str
    input_image_sha256: str | None = None


class ManifestStore(SQLModel, table=True):
    """The C2PA manifest store embedded in a released video, kept so that a copy which lost it
    (stripped or re-encoded) can be matched to it again by its watermark (soft-binding resolution).

    Not chained: the store is signed in itself (C2PA), and the chained record holds its label,
    which a reader checks against the store's active manifest.
    """

    __tablename__ = "manifest_stores"

    label: str = Field(primary_key=True)
    record_seq: int = Field(foreign_key="generation_records.seq", index=True)
    sha256: str
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class VerdictRow(SQLModel, table=True):
    """One classifier verdict of a generation record (covered by the record's hash)."""

    __tablename__ = "verdicts"
    __table_args__ = (
        # A record's verdicts, probed per record by the category/score filters.
        Index("ix_verdicts_record", "record_seq", "category", "score"),
        Index("ix_verdicts_category_score", "category", "score"),
    )

    id: int | None = Field(default=None, primary_key=True)
    record_seq: int = Field(foreign_key="generation_records.seq")
    position: int  # order within the record
    stage: str
    classifier: str  # no index of its own: SQLite would probe it per record instead of ix_verdicts_record
    classifier_version: str
    category: str
    score: float
    threshold: float
    action: str
    calibrated: bool
    detail: str = ""
    # Frame-stage verdicts: JSON of every frame's score, the frames that fired and the rule.
    frames: str | None = None


class Decision(SQLModel, table=True):
    """A reviewer's decision on a record: confirm, overturn or escalate. Never changed; a later
    decision on the same record supersedes it."""

    __tablename__ = "decisions"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    record_seq: int = Field(foreign_key="generation_records.seq", index=True)
    created_at: dt.datetime = Field(sa_column=_utc_column())
    decision: str
    reason: str
    reviewer: str  # the API key's name
    reviewer_key: str  # the API key's public id
    prev_hash: str
    row_hash: str = Field(unique=True)


class Redaction(SQLModel, table=True):
    """A redaction event: the record's content was erased on request."""

    __tablename__ = "redactions"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    record_seq: int = Field(foreign_key="generation_records.seq", index=True)
    created_at: dt.datetime = Field(sa_column=_utc_column())
    reason: str
    requested_by: str
    prev_hash: str
    row_hash: str = Field(unique=True)


class Checkpoint(SQLModel, table=True):
    """A signed statement of the chain head: truncation or a rewrite of the chain breaks it."""

    __tablename__ = "checkpoints"

    id: int | None = Field(default=None, primary_key=True)
    head_seq: int = Field(index=True)
    head_hash: str
    created_at: dt.datetime = Field(sa_column=_utc_column())
    signer: str  # sha256 of the signing certificate (DER)
    algorithm: str
    signature: str  # base64


class ApiKey(SQLModel, table=True):
    """An API key: only a hash of the secret is kept."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    key_id: str = Field(index=True, unique=True)  # public part, shown in logs and decisions
    secret_sha256: str
    role: str  # generator, reviewer or admin
    tenant: str | None = None  # generator keys see only this tenant's records
    tier: str | None = None  # generator keys: the policy tier they generate under (None: the default)
    name: str
    created_at: dt.datetime = Field(sa_column=_utc_column())
    revoked_at: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class GenerationJob(SQLModel, table=True):
    """One queued generation: its state while workers run it. Not chained: it changes as the job
    runs; its outcome is the chained generation record named by `generation_id`."""

    __tablename__ = "generation_jobs"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key"),
        Index("ix_generation_jobs_user_created", "tenant", "user", "created_at"),
        Index("ix_generation_jobs_user_state", "tenant", "user", "state"),
    )

    id: str = Field(primary_key=True)
    tenant: str
    user: str
    key_id: str | None = None
    tier: str
    state: str = Field(index=True)  # queued, running, succeeded, failed, cancelled
    progress: float = 0.0  # 0..1
    stage: str | None = None
    idempotency_key: str | None = None
    request_sha256: str  # what an idempotent retry must match
    params: str  # JSON: width, height, num_frames, fps, steps, seed, visible_watermark
    attempts: int = 0
    cancel_requested: bool = False
    generation_id: str | None = None  # the audit record, once written
    reason: str | None = None
    output_path: str | None = None
    created_at: dt.datetime = Field(sa_column=_utc_column())
    started_at: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    heartbeat_at: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    finished_at: dt.datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class JobInput(SQLModel, table=True):
    """A queued job's prompt and image, until it ends: then they live in the audit record only
    (where redaction can reach them), and this row is deleted. Queue messages carry job ids only."""

    __tablename__ = "job_inputs"

    job_id: str = Field(primary_key=True, foreign_key="generation_jobs.id")
    prompt: str
    image: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    image_type: str | None = None
    image_name: str | None = None
