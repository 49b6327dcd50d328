"""The append-only, hash-chained audit store (SQLite by default, PostgreSQL by URL).

Each record's hash covers its content (including its verdicts) and the previous record's hash,
so changing, removing or reordering any row breaks the chain from that row on. Two things the
chain alone cannot show: removal of the newest records (truncation), and a rewrite of the whole
chain by someone with write access; signed checkpoints of the chain head are the remedy for both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlmodel import Session, SQLModel, create_engine, select

from audit.models import GenerationRecord, VerdictRow

GENESIS = "0" * 64
_CHAIN_LOCK = 0x68616C6D  # advisory lock key for the chain head on PostgreSQL
# The record fields the hash covers; ids and hashes themselves are excluded.
_HASHED_FIELDS = (
    "generation_id", "created_at", "tenant", "user", "prompt", "input_image_sha256",
    "policy_name", "policy_version", "model_id", "model_version", "status", "flagged",
    "blocked_stage", "reason", "output_sha256", "output_path", "watermark_payload",
    "watermark_method", "manifest_label",
)  # fmt: skip
_VERDICT_FIELDS = (
    "stage", "classifier", "classifier_version", "category", "score", "threshold", "action",
    "calibrated", "detail",
)  # fmt: skip


@dataclass
class RecordDraft:
    """Everything the pipeline records about one request."""

    generation_id: str
    prompt: str
    policy_name: str
    policy_version: str
    model_id: str
    model_version: str
    status: str
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    tenant: str = "default"
    user: str = "local"
    input_image_sha256: str | None = None
    flagged: bool = False
    blocked_stage: str | None = None
    reason: str | None = None
    output_sha256: str | None = None
    output_path: str | None = None
    watermark_payload: str | None = None
    watermark_method: str | None = None
    manifest_label: str | None = None


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    records_checked: int
    first_broken_id: int | None = None
    problem: str | None = None


def _content_hash(record: GenerationRecord, verdicts: list[VerdictRow]) -> str:
    content = {name: getattr(record, name) for name in _HASHED_FIELDS}
    content["created_at"] = _utc(record.created_at).isoformat()
    content["verdicts"] = [
        {name: (round(getattr(v, name), 6) if name in ("score", "threshold") else getattr(v, name))
         for name in _VERDICT_FIELDS}
        for v in sorted(verdicts, key=lambda v: v.position)
    ]  # fmt: skip
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _chain(prev_hash: str, content_hash: str) -> str:
    return hashlib.sha256(f"{prev_hash}:{content_hash}".encode()).hexdigest()


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes; every timestamp here is written in UTC.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class AuditStore:
    """Writes and reads generation records. `url` is any SQLAlchemy URL (sqlite:///..., postgresql://...)."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite://") and url.removeprefix("sqlite://") in ("", "/", "/:memory:"):
            raise ValueError("an in-memory SQLite audit log would be lost on exit; give a file path")
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self._engine = create_engine(url)
        self._writer = self._engine
        if self._engine.dialect.name == "sqlite":
            # Writes take the write lock at BEGIN, so concurrent writers serialise on the chain
            # head; reads use the plain engine and never wait for it.
            self._writer = create_engine(url)
            event.listen(self._writer, "connect", lambda c, _r: setattr(c, "isolation_level", None))
            event.listen(self._writer, "begin", lambda c: c.exec_driver_sql("BEGIN IMMEDIATE"))
        SQLModel.metadata.create_all(self._engine)

    def record(self, draft: RecordDraft) -> GenerationRecord:
        """Append one record with its verdicts, chained to the current head."""
        with Session(self._writer) as session, session.begin():
            if self._writer.dialect.name == "postgresql":
                # One writer at a time extends the chain (SQLite gets this from BEGIN IMMEDIATE).
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
            head = session.exec(
                select(GenerationRecord).order_by(GenerationRecord.id.desc()).limit(1)
            ).first()
            values = {k: v for k, v in draft.__dict__.items() if k != "verdicts"}
            record = GenerationRecord(
                **values,
                created_at=dt.datetime.now(dt.UTC),
                prev_hash=head.record_hash if head else GENESIS,
                record_hash="",
            )
            verdicts = [
                VerdictRow(record_id=0, position=i, **{k: v[k] for k in _VERDICT_FIELDS})
                for i, v in enumerate(draft.verdicts)
            ]
            record.record_hash = _chain(record.prev_hash, _content_hash(record, verdicts))
            session.add(record)
            session.flush()
            for verdict in verdicts:
                verdict.record_id = record.id
                session.add(verdict)
            session.flush()
            session.expunge(record)
        return record

    def get(self, generation_id: str) -> GenerationRecord | None:
        with Session(self._engine) as session:
            return session.exec(
                select(GenerationRecord).where(GenerationRecord.generation_id == generation_id)
            ).first()

    def find_by_sha256(self, output_sha256: str) -> GenerationRecord | None:
        """The released record whose output file has this sha256, if any."""
        with Session(self._engine) as session:
            query = select(GenerationRecord).where(GenerationRecord.output_sha256 == output_sha256)
            return session.exec(query.order_by(GenerationRecord.id)).first()

    def find_by_payload(self, watermark_payload: str) -> GenerationRecord | None:
        """The record whose invisible watermark carries this payload (payloads are unique)."""
        with Session(self._engine) as session:
            query = select(GenerationRecord).where(GenerationRecord.watermark_payload == watermark_payload)
            return session.exec(query).first()

    def verdicts(self, record_id: int) -> list[VerdictRow]:
        with Session(self._engine) as session:
            return list(
                session.exec(
                    select(VerdictRow).where(VerdictRow.record_id == record_id).order_by(VerdictRow.position)
                )
            )

    def verify_chain(self) -> ChainReport:
        """Recompute every record's hash in order; report the first broken link."""
        prev = GENESIS
        checked = 0
        with Session(self._engine) as session:
            records = session.exec(select(GenerationRecord).order_by(GenerationRecord.id))
            for record in records:
                verdicts = list(session.exec(select(VerdictRow).where(VerdictRow.record_id == record.id)))
                if record.prev_hash != prev:
                    return ChainReport(False, checked, record.id, "previous-hash link does not match")
                if _chain(prev, _content_hash(record, verdicts)) != record.record_hash:
                    return ChainReport(False, checked, record.id, "record content does not match its hash")
                prev = record.record_hash
                checked += 1
        return ChainReport(True, checked)

    def dispose(self) -> None:
        self._engine.dispose()
        self._writer.dispose()
