"""The append-only, hash-chained audit store (SQLite by default, PostgreSQL by URL).

Records, reviewer decisions and redaction events share one chain (see audit/chain.py). Writers
extend it one transaction at a time: SQLite takes its write lock at BEGIN, PostgreSQL locks the
chain-head row. Changing, removing or reordering any row breaks the chain from that row on;
removing the newest rows, or rewriting the whole chain, is caught by the signed checkpoints of
the chain head, which are written every `checkpoint_every` rows and by `checkpoint()`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import secrets
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, event, insert, make_url, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, create_engine, select

from audit import chain, migrate
from audit.checkpoint import CheckpointKey
from audit.models import (
    ChainHead,
    Checkpoint,
    Decision,
    GenerationRecord,
    ManifestStore,
    Outcome,
    RecordContent,
    Redaction,
    VerdictRow,
)

DECISIONS = ("confirm", "overturn", "escalate")


class AuditError(ValueError):
    """A request the store refuses (unknown record, bad decision, ...); nothing was written."""


class RecordNotFound(AuditError):
    """No record has the given generation id."""


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
    watermark_key_id: int | None = None
    manifest_label: str | None = None
    manifest_store: bytes | None = None  # the signed C2PA manifest store (not chained: self-signed)
    tier: str | None = None  # the policy tier the request ran under


@dataclass(frozen=True)
class CheckpointStatement:
    """A checkpoint as it is published: enough to check the chain against it later."""

    head_seq: int
    head_hash: str
    created_at: dt.datetime
    signer: str
    algorithm: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "created_at": chain.utc(self.created_at).isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointStatement:
        values = {k: data[k] for k in ("head_seq", "head_hash", "signer", "algorithm", "signature")}
        return cls(created_at=dt.datetime.fromisoformat(data["created_at"]), **values)


@dataclass
class ChainReport:
    ok: bool
    rows_checked: int
    first_broken_seq: int | None = None
    problem: str | None = None
    checkpoints_checked: int = 0
    warnings: list[str] = field(default_factory=list)


class AuditStore:
    """Writes and reads the audit log. `url` is any SQLAlchemy URL (sqlite:///..., postgresql+psycopg://...).

    A new, empty database is migrated to the current schema on first open; an older one must be
    upgraded with `hallmark db upgrade` first.
    """

    def __init__(
        self,
        url: str,
        checkpoint_key: CheckpointKey | None = None,
        checkpoint_every: int = 1000,
        retired_checkpoint_keys: Sequence[CheckpointKey] = (),
    ) -> None:
        """`retired_checkpoint_keys`: certificates that signed checkpoints before a key rotation."""
        if url.startswith("sqlite://") and url.removeprefix("sqlite://") in ("", "/", "/:memory:"):
            raise ValueError("an in-memory SQLite audit log would be lost on exit; give a file path")
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.checkpoint_key = checkpoint_key
        self.checkpoint_every = checkpoint_every
        self._verifying_keys = {k.fingerprint: k for k in retired_checkpoint_keys}
        if checkpoint_key is not None:
            self._verifying_keys[checkpoint_key.fingerprint] = checkpoint_key
        # hide_parameters: a database error's text never carries a prompt into a log.
        self.engine = create_engine(url, connect_args=_postgres_options(url), hide_parameters=True)
        self._writer = self.engine
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # Writes take the write lock at BEGIN, so concurrent writers serialise on the chain
            # head; reads use the plain engine and (in WAL mode) never wait for a writer.
            self._writer = create_engine(url, hide_parameters=True)
            event.listen(self._writer, "connect", _sqlite_pragmas)
            event.listen(self._writer, "connect", lambda c, _r: setattr(c, "isolation_level", None))
            event.listen(self._writer, "begin", lambda c: c.exec_driver_sql("BEGIN IMMEDIATE"))
        migrate.ensure_current(self.engine)
        self._group = _GroupCommit(self.record_many)

    # ---- writing --------------------------------------------------------------------------

    def record(self, draft: RecordDraft) -> GenerationRecord:
        """Append one record with its verdicts, chained to the current head.

        Returns once the record is committed. Calls from several threads at once share
        transactions (group commit), so throughput grows with concurrency."""
        return GenerationRecord(**self._group.submit(draft))

    def record_many(self, drafts: Sequence[RecordDraft]) -> list[dict[str, Any]]:
        """Append records in one transaction: all of them are written, or none. Returns their columns."""
        with self._extend() as (conn, head):
            records, contents, verdicts, manifests = [], [], [], []
            for draft in drafts:
                record, content, rows = _build_record(draft, head)
                records.append(record)
                contents.append(content)
                verdicts.extend(rows)
                if draft.manifest_store is not None:
                    if not draft.manifest_label:
                        raise AuditError("record refused, nothing written: a manifest store needs its label")
                    manifests.append(
                        {
                            "label": draft.manifest_label,
                            "record_seq": record["seq"],
                            "sha256": hashlib.sha256(draft.manifest_store).hexdigest(),
                            "data": draft.manifest_store,
                        }
                    )
            try:
                conn.execute(insert(GenerationRecord), records)
                conn.execute(insert(RecordContent), contents)
                if verdicts:
                    conn.execute(insert(VerdictRow), verdicts)
                if manifests:
                    conn.execute(insert(ManifestStore), manifests)
            except IntegrityError as exc:
                raise AuditError(f"record refused, nothing written: {_constraint(exc)}") from exc
        return records

    def decide(
        self, generation_id: str, decision: str, reason: str, reviewer: str, reviewer_key: str
    ) -> Decision:
        """Append a reviewer decision on a record."""
        if decision not in DECISIONS:
            raise AuditError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        if not reason.strip():
            raise AuditError("a decision needs a reason")
        with self._extend() as (conn, head):
            record_seq = self._seq_of(conn, generation_id)
            row = Decision(
                seq=head.seq + 1,
                record_seq=record_seq,
                created_at=head.tick(),
                decision=decision,
                reason=reason.strip(),
                reviewer=reviewer,
                reviewer_key=reviewer_key,
                prev_hash=head.row_hash,
                row_hash="",
            )
            row.row_hash = chain.decision_hash(row.prev_hash, row)
            head.seq, head.row_hash = row.seq, row.row_hash
            conn.execute(insert(Decision), [_columns(row)])
        return row

    def redact(self, generation_id: str, reason: str, requested_by: str) -> Redaction:
        """Erase a record's prompt and input-image hash, and append the event that says so."""
        if not reason.strip():
            raise AuditError("a redaction needs a reason")
        with self._extend() as (conn, head):
            record_seq = self._seq_of(conn, generation_id)
            content = select(RecordContent.record_seq).where(RecordContent.record_seq == record_seq)
            if conn.execute(content).first() is None:
                raise AuditError(f"record {generation_id} is already redacted")
            row = Redaction(
                seq=head.seq + 1,
                record_seq=record_seq,
                created_at=head.tick(),
                reason=reason.strip(),
                requested_by=requested_by,
                prev_hash=head.row_hash,
                row_hash="",
            )
            row.row_hash = chain.redaction_hash(row.prev_hash, row)
            head.seq, head.row_hash = row.seq, row.row_hash
            conn.execute(insert(Redaction), [_columns(row)])
            conn.execute(RecordContent.__table__.delete().where(RecordContent.record_seq == record_seq))
        return row

    def checkpoint(self) -> CheckpointStatement:
        """Sign the current chain head now."""
        if self.checkpoint_key is None:
            raise AuditError("no checkpoint key configured")
        with self._extend(force_checkpoint=True) as (_conn, _head):
            pass
        return self.checkpoints()[-1]

    def _seq_of(self, conn: Connection, generation_id: str) -> int:
        seq = conn.execute(
            select(GenerationRecord.seq).where(GenerationRecord.generation_id == generation_id)
        ).scalar_one_or_none()
        if seq is None:
            raise RecordNotFound(f"no record with generation id {generation_id!r}")
        return seq

    def transaction(self):
        """A write transaction that holds the database's write lock (SQLite) from its start."""
        return self._writer.begin()

    def _extend(self, force_checkpoint: bool = False):
        return _ChainTransaction(self, force_checkpoint)

    # ---- reading --------------------------------------------------------------------------

    def get(self, generation_id: str) -> GenerationRecord | None:
        return self._one(select(GenerationRecord).where(GenerationRecord.generation_id == generation_id))

    def find_by_sha256(self, output_sha256: str) -> GenerationRecord | None:
        """The record whose released file has this sha256, if any."""
        query = select(GenerationRecord).where(GenerationRecord.output_sha256 == output_sha256)
        return self._one(query.order_by(GenerationRecord.seq))

    def find_by_payload(self, watermark_payload: str) -> GenerationRecord | None:
        """The record whose invisible watermark carries this payload (payloads are unique)."""
        return self._one(
            select(GenerationRecord).where(GenerationRecord.watermark_payload == watermark_payload)
        )

    def find_by_manifest(self, manifest_label: str) -> GenerationRecord | None:
        query = select(GenerationRecord).where(GenerationRecord.manifest_label == manifest_label)
        return self._one(query.order_by(GenerationRecord.seq))

    def manifest_store(self, label: str) -> bytes | None:
        """The C2PA manifest store a released video was signed with, by its active manifest label."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ManifestStore.data, ManifestStore.sha256).where(ManifestStore.label == label)
            ).first()
        if row is None:
            return None
        if hashlib.sha256(row.data).hexdigest() != row.sha256:
            raise AuditError(
                f"the stored manifest store {label} does not match its sha256 (altered in the database)"
            )
        return row.data

    def content(self, record_seq: int) -> RecordContent | None:
        """The prompt and input-image hash; None once redacted."""
        with Session(self.engine) as session:
            return session.get(RecordContent, record_seq)

    def verdicts(self, record_seq: int) -> list[VerdictRow]:
        query = select(VerdictRow).where(VerdictRow.record_seq == record_seq).order_by(VerdictRow.position)
        return self._all(query)

    def decisions(self, record_seq: int) -> list[Decision]:
        return self._all(select(Decision).where(Decision.record_seq == record_seq).order_by(Decision.seq))

    def redactions(self, record_seq: int) -> list[Redaction]:
        return self._all(select(Redaction).where(Redaction.record_seq == record_seq).order_by(Redaction.seq))

    def checkpoints(self) -> list[CheckpointStatement]:
        rows = self._all(select(Checkpoint).order_by(Checkpoint.head_seq, Checkpoint.id))
        return [
            CheckpointStatement(r.head_seq, r.head_hash, r.created_at, r.signer, r.algorithm, r.signature)
            for r in rows
        ]

    def head(self) -> ChainHead:
        with Session(self.engine) as session:
            return session.get(ChainHead, 1)

    def _one(self, query):
        with Session(self.engine) as session:
            return session.exec(query).first()

    def _all(self, query) -> list:
        with Session(self.engine) as session:
            return list(session.exec(query))

    # ---- verification ---------------------------------------------------------------------

    def verify_chain(self, extra_checkpoints: Sequence[CheckpointStatement] = ()) -> ChainReport:
        """Recompute every chained row in order and check the head and the signed checkpoints.

        Reports the first broken link: a row whose content no longer matches its hash, a row whose
        previous-hash link does not match (a row removed or inserted before it), content erased
        without a redaction event, or the end of the chain before a signed checkpoint (truncation).
        """
        checkpoints = sorted([*self.checkpoints(), *extra_checkpoints], key=lambda c: c.head_seq)
        report = ChainReport(ok=True, rows_checked=0)
        problems: list[tuple[int, str]] = []
        pending = list(checkpoints)
        for c in checkpoints:
            message = chain.checkpoint_message(c.head_seq, c.head_hash, c.created_at)
            if not self._verifying_keys:
                report.warnings.append("checkpoint signatures not checked: no checkpoint key configured")
                break
            key = self._verifying_keys.get(c.signer)
            if key is None:
                report.warnings.append(
                    f"checkpoint at seq {c.head_seq} is signed by another certificate "
                    f"({c.signer[:16]}...); not trusted"
                )
                pending.remove(c)
            elif not key.verify(message, c.signature):
                problems.append((c.head_seq, "a checkpoint's signature does not verify (forged or altered)"))
                pending.remove(c)

        while pending and pending[0].head_seq == 0:  # signed while the chain was still empty
            c = pending.pop(0)
            if c.head_hash == chain.GENESIS:
                report.checkpoints_checked += 1
            else:
                problems.append((0, "the chain differs from a signed checkpoint (rewritten)"))
        newest = checkpoints[-1] if checkpoints else None
        if (
            newest
            and self.checkpoint_key
            and newest.signer != self.checkpoint_key.fingerprint
            and newest.signer in self._verifying_keys
        ):
            report.warnings.append(
                "the newest checkpoint is signed by a retired certificate; sign one with "
                "the current key (hallmark audit checkpoint)"
            )
        prev, last_seq = chain.GENESIS, 0
        missing_content: list[int] = []
        redacted: set[int] = set()
        with self.engine.connect() as conn:
            for seq, kind, row, verdicts, has_content, content_ok in _chained_rows(conn):
                if row["prev_hash"] != prev:
                    problems.append(
                        (seq, "previous-hash link does not match (a row was removed, inserted or reordered)")
                    )
                    break
                if kind == "record":
                    computed = chain.record_hash(prev, row, verdicts)
                    if has_content and not content_ok:
                        problems.append(
                            (seq, "the record's prompt or image hash does not match its content hash")
                        )
                        break
                    if not has_content:
                        missing_content.append(seq)
                elif kind == "decision":
                    computed = chain.decision_hash(prev, row)
                else:
                    computed = chain.redaction_hash(prev, row)
                    redacted.add(row["record_seq"])
                if computed != row["row_hash"]:
                    what = "record's fields or verdicts" if kind == "record" else f"{kind}'s fields"
                    problems.append((seq, f"the {what} do not match its hash"))
                    break
                while pending and pending[0].head_seq <= seq:
                    c = pending.pop(0)
                    if c.head_seq < seq or c.head_hash != row["row_hash"]:
                        problems.append(
                            (c.head_seq, "the chain differs from a signed checkpoint (rewritten)")
                        )
                    else:
                        report.checkpoints_checked += 1
                prev, last_seq = row["row_hash"], seq
                report.rows_checked += 1
            head = conn.execute(select(ChainHead.seq, ChainHead.row_hash)).first()
        if not problems:
            for c in pending:
                problems.append(
                    (
                        c.head_seq,
                        f"rows up to seq {c.head_seq} were signed in a checkpoint but the "
                        f"chain ends at seq {last_seq} (truncated)",
                    )
                )
            if head is None or (head.seq, head.row_hash) != (last_seq, prev):
                problems.append(
                    (
                        last_seq + 1,
                        f"the chain head says seq {head.seq if head else None} but the "
                        f"chain ends at seq {last_seq} (truncated)",
                    )
                )
            for seq in missing_content:
                if seq not in redacted:
                    problems.append((seq, "record content was erased without a redaction event"))
                    break
        if problems:
            seq, problem = min(problems)
            report.ok, report.first_broken_seq, report.problem = False, seq, problem
        return report

    def dispose(self) -> None:
        self.engine.dispose()
        self._writer.dispose()


class _ChainTransaction:
    """`with store._extend() as (conn, head)`: one write transaction holding the chain head."""

    def __init__(self, store: AuditStore, force_checkpoint: bool) -> None:
        self.store, self.force_checkpoint = store, force_checkpoint

    def __enter__(self) -> tuple[Connection, _Head]:
        self.conn = self.store._writer.connect()
        self.transaction = self.conn.begin()
        query = select(ChainHead.seq, ChainHead.row_hash, ChainHead.checkpoint_seq, ChainHead.created_at)
        query = query.where(ChainHead.id == 1)
        if self.store._writer.dialect.name == "postgresql":
            query = query.with_for_update()  # one writer at a time extends the chain
        seq, row_hash, checkpoint_seq, created_at = self.conn.execute(query).one()
        self.head = _Head(seq, row_hash, checkpoint_seq, chain.utc(created_at) if created_at else None)
        return self.conn, self.head

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._finish()
                self.transaction.commit()
            else:
                self.transaction.rollback()
        finally:
            self.conn.close()

    def _finish(self) -> None:
        head, store, conn = self.head, self.store, self.conn
        key = store.checkpoint_key
        due = key is not None and head.seq - head.checkpoint_seq >= store.checkpoint_every
        if key is not None and (self.force_checkpoint or due):
            created_at = _now()
            message = chain.checkpoint_message(head.seq, head.row_hash, created_at)
            conn.execute(
                insert(Checkpoint),
                [
                    {
                        "head_seq": head.seq,
                        "head_hash": head.row_hash,
                        "created_at": created_at,
                        "signer": key.fingerprint,
                        "algorithm": key.algorithm,
                        "signature": key.sign(message),
                    }
                ],
            )
            head.checkpoint_seq = head.seq
        conn.execute(
            update(ChainHead)
            .where(ChainHead.id == 1)
            .values(
                seq=head.seq,
                row_hash=head.row_hash,
                checkpoint_seq=head.checkpoint_seq,
                created_at=head.created_at,
            )
        )


class _GroupCommit:
    """Concurrent `record()` calls share transactions. A caller that finds no write in progress
    writes everything queued so far (up to `limit`) in one transaction; the others wait for it.
    A batch that the database refuses is retried one record at a time, so one bad record fails
    alone. Every caller returns only after its own record is committed (or raises)."""

    def __init__(self, write_many, limit: int = 500) -> None:
        self._write_many, self._limit = write_many, limit
        self._cond = threading.Condition()
        self._queue: list[_Slot] = []
        self._busy = False

    def submit(self, draft: RecordDraft) -> dict[str, Any]:
        slot = _Slot(draft)
        with self._cond:
            self._queue.append(slot)
            while not slot.done and self._busy:
                self._cond.wait()
            if not slot.done:
                self._busy = True
                batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
        if not slot.done:
            try:
                self._write(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.row

    def _write(self, batch: list[_Slot]) -> None:
        try:
            for slot, row in zip(batch, self._write_many([s.draft for s in batch]), strict=True):
                slot.row = row
        except AuditError as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for slot in batch:
                    try:
                        slot.row = self._write_many([slot.draft])[0]
                    except Exception as each:  # noqa: BLE001  (handed to its own caller)
                        slot.error = each
        except Exception as exc:  # the database is unreachable, ...: every caller sees it
            for slot in batch:
                slot.error = exc
        finally:
            for slot in batch:
                slot.done = True


@dataclass
class _Head:
    """The chain head as a write transaction sees and advances it (the `chain_head` row)."""

    seq: int
    row_hash: str
    checkpoint_seq: int
    created_at: dt.datetime | None

    def tick(self) -> dt.datetime:
        """The time for the next row: now, but never before the previous row (the clock may step
        back), so that seq order is time order and time ranges can be read as seq ranges."""
        now = _now()
        self.created_at = now if self.created_at is None or now > self.created_at else self.created_at
        return self.created_at


@dataclass
class _Slot:
    draft: RecordDraft
    row: dict[str, Any] | None = None
    error: BaseException | None = None
    done: bool = False


def _build_record(draft: RecordDraft, head: _Head) -> tuple[dict, dict, list[dict]]:
    """The rows (column dicts) for one draft, chained to `head`, which moves on to the new record.

    Plain dicts, not model objects: validating models costs more than hashing and inserting."""
    seq = head.seq + 1
    salt = secrets.token_hex(16)
    content = {
        "record_seq": seq,
        "salt": salt,
        "prompt": draft.prompt,
        "input_image_sha256": draft.input_image_sha256,
    }
    verdicts = []
    for i, v in enumerate(draft.verdicts):
        row = {k: v[k] for k in chain.VERDICT_FIELDS}
        row.update(
            record_seq=seq,
            position=i,
            score=round(float(row["score"]), 6),
            threshold=round(float(row["threshold"]), 6),
            frames=json.dumps(v["frames"], sort_keys=True) if v.get("frames") else None,
        )
        verdicts.append(row)
    top = max(verdicts, key=lambda v: v["score"], default=None)
    record = {
        k: v
        for k, v in draft.__dict__.items()
        if k not in ("verdicts", "prompt", "input_image_sha256", "manifest_store")
    }
    record.update(
        seq=seq,
        created_at=head.tick(),
        needs_review=draft.status == Outcome.blocked or draft.flagged,
        top_score=top["score"] if top else 0.0,
        top_category=top["category"] if top else None,
        top_classifier=top["classifier"] if top else None,
        content_hash=chain.content_hash(salt, draft.prompt, draft.input_image_sha256),
        prev_hash=head.row_hash,
    )
    record["row_hash"] = chain.record_hash(record["prev_hash"], record, verdicts)
    head.seq, head.row_hash = seq, record["row_hash"]
    return record, content, verdicts


class ChainedRow(NamedTuple):
    seq: int
    kind: str  # record, decision or redaction
    row: dict
    verdicts: list[dict]  # a record's verdict rows (none for the other kinds)
    has_content: bool  # a record's content row is present (not redacted)
    content_ok: bool  # ... and matches the record's content hash


def _chained_rows(conn) -> Iterator[ChainedRow]:
    """Every chained row, of all three tables, in seq order."""
    records = _stream(conn, select(GenerationRecord).order_by(GenerationRecord.seq))
    verdicts = _stream(conn, select(VerdictRow).order_by(VerdictRow.record_seq, VerdictRow.position))
    contents = _stream(conn, select(RecordContent).order_by(RecordContent.record_seq))

    def with_parts() -> Iterator[ChainedRow]:
        next_verdict, next_content = next(verdicts, None), next(contents, None)
        for row in records:
            seq = row["seq"]
            own = []
            while next_verdict is not None and next_verdict["record_seq"] <= seq:
                if next_verdict["record_seq"] == seq:
                    own.append(next_verdict)
                next_verdict = next(verdicts, None)
            while next_content is not None and next_content["record_seq"] < seq:
                next_content = next(contents, None)
            present = next_content is not None and next_content["record_seq"] == seq
            matches = (
                present
                and chain.content_hash(
                    next_content["salt"], next_content["prompt"], next_content["input_image_sha256"]
                )
                == row["content_hash"]
            )
            yield ChainedRow(seq, "record", row, own, present, matches)

    decisions = (
        ChainedRow(r["seq"], "decision", r, [], True, True)
        for r in _stream(conn, select(Decision).order_by(Decision.seq))
    )
    redactions = (
        ChainedRow(r["seq"], "redaction", r, [], True, True)
        for r in _stream(conn, select(Redaction).order_by(Redaction.seq))
    )
    yield from heapq.merge(with_parts(), decisions, redactions, key=lambda chained: chained.seq)


def _stream(conn, query) -> Iterator[dict]:
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
    for row in result.mappings():
        yield dict(row)


def _columns(model, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.name: getattr(model, c.name) for c in model.__table__.columns if c.name not in skip}


def _constraint(exc: IntegrityError) -> str:
    text = str(exc.orig).lower()
    for column in ("watermark_payload", "generation_id", "row_hash"):
        if column in text:
            return f"{column} already exists in the audit log"
    return str(exc.orig).splitlines()[0]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _postgres_options(url: str) -> dict[str, str]:
    """PostgreSQL session settings for Hallmark's connections (kept with any `options` in the URL).

    random_page_cost 1.1 (the usual value for SSDs; the default 4.0 assumes spinning disks): at 4.0
    the planner walks the primary key for `policy_version = X ORDER BY seq DESC LIMIT 51` instead
    of ix_records_policy_seq and reads most of the table when X's rows are old (93 ms -> 3 ms at
    1M records, bench/audit.py)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return {}
    given = parsed.query.get("options", "")
    given = given if isinstance(given, str) else " ".join(given)
    return {"options": f"{given} -c random_page_cost=1.1".strip()}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer, nor it them
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint of the WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
