"""sqlmodel tables of the audit log."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime
from sqlmodel import Field, SQLModel


class GenerationRecord(SQLModel, table=True):
    """One generation request, allowed or not. Rows are only ever inserted."""

    __tablename__ = "generation_records"

    id: int | None = Field(default=None, primary_key=True)
    generation_id: str = Field(index=True, unique=True)
    # Timezone-aware on every backend: the hash covers this value, so it must round-trip exactly.
    created_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    tenant: str = "default"
    user: str = "local"
    prompt: str
    input_image_sha256: str | None = None
    policy_name: str
    policy_version: str
    model_id: str
    model_version: str
    status: str = Field(index=True)  # released, blocked or error
    flagged: bool = False
    blocked_stage: str | None = None  # the stage that blocked or failed
    reason: str | None = None  # what blocked it, or the error
    output_sha256: str | None = Field(default=None, index=True)
    output_path: str | None = None
    watermark_payload: str | None = Field(default=None, index=True, unique=True)
    watermark_method: str | None = None
    manifest_label: str | None = Field(default=None, index=True)
    prev_hash: str
    record_hash: str = Field(unique=True)


class VerdictRow(SQLModel, table=True):
    """One classifier verdict of a generation record."""

    __tablename__ = "verdicts"

    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(foreign_key="generation_records.id", index=True)
    position: int  # order within the record
    stage: str
    classifier: str
    classifier_version: str
    category: str = Field(index=True)
    score: float
    threshold: float
    action: str
    calibrated: bool
    detail: str = ""
