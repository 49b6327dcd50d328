"""Review queries over the audit store: filtered lists with cursor pagination, the review queue,
statistics and streaming exports. Pure reads; every query is one SQL statement per page.

Pagination is by keyset (the last row's sort key and seq), so a page never repeats or skips a row
when records are written between page requests.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Date, and_, cast, exists, func, or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from audit.chain import VERDICT_FIELDS, utc
from audit.models import Decision, GenerationRecord, Outcome, RecordContent, Redaction, VerdictRow
from audit.store import DECISIONS, AuditError, AuditStore

DecisionName = Literal["confirm", "overturn", "escalate"]


class RecordFilter(BaseModel):
    """Which records a list, an export or the statistics cover. Every field is optional."""

    model_config = {"extra": "forbid"}

    since: dt.datetime | None = Field(None, description="created at or after (ISO 8601; UTC if no zone)")
    until: dt.datetime | None = Field(None, description="created before (ISO 8601; UTC if no zone)")
    tenant: str | None = None
    user: str | None = None
    status: Outcome | None = None
    blocked_stage: str | None = Field(None, description="the stage that blocked or failed the request")
    stage: str | None = Field(None, description="with classifier/category/min_score: a verdict at this stage")
    classifier: str | None = Field(None, description="a verdict by this classifier")
    category: str | None = Field(None, description="a verdict in this category")
    min_score: float | None = Field(
        None, ge=0, description="a verdict (matching the above) scoring at least this"
    )
    policy_version: str | None = None
    model: str | None = Field(None, description="model id")
    reviewed: bool | None = Field(None, description="true: has a reviewer decision; false: has none")
    decision: DecisionName | None = Field(None, description="the latest reviewer decision")
    q: str | None = Field(
        None, min_length=1, max_length=200, description="text in the prompt (case-insensitive)"
    )

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else utc(value)


class PolicyRef(BaseModel):
    name: str
    version: str


class ModelRef(BaseModel):
    id: str
    version: str


class WatermarkRef(BaseModel):
    payload: str | None = Field(description="hex; null when nothing was released")
    method: str | None
    key_id: int | None


class RecordSummary(BaseModel):
    """A record as lists show it."""

    seq: int = Field(description="position in the audit chain")
    generation_id: str
    created_at: str
    tenant: str
    user: str
    status: Outcome
    flagged: bool
    blocked_stage: str | None = Field(description="the stage that blocked or failed the request")
    reason: str | None
    top_score: float = Field(description="the highest verdict score")
    top_category: str | None
    top_classifier: str | None
    policy: PolicyRef
    model: ModelRef
    output_sha256: str | None
    watermark: WatermarkRef
    manifest_label: str | None = Field(description="C2PA manifest label")
    prompt: str | None = Field(description="null once redacted")
    input_image_sha256: str | None = Field(
        description="the input image's sha256, if one was given; null once redacted"
    )
    redacted: bool
    latest_decision: DecisionName | None


class VerdictOut(BaseModel):
    stage: str
    classifier: str
    classifier_version: str
    category: str
    score: float
    threshold: float
    action: Literal["allow", "flag", "block"]
    calibrated: bool
    detail: str
    frames: dict[str, Any] | None = None  # frame stage: every frame's score, the frames that fired, the rule


class DecisionOut(BaseModel):
    seq: int
    created_at: str
    decision: DecisionName
    reason: str
    reviewer: str = Field(description="the API key's name")
    reviewer_key: str = Field(description="the API key's id")


class RedactionOut(BaseModel):
    seq: int
    created_at: str
    reason: str
    requested_by: str


class Links(BaseModel):
    self: str
    video: str | None = Field(description="the released MP4; null when nothing was released")
    thumbnails: str | None = Field(description="a PNG strip of 8 frames")
    manifest: str | None = Field(None, description="the C2PA manifest store it was released with (public)")


class RecordDetail(RecordSummary):
    """One record with everything the audit log holds about it."""

    row_hash: str
    verdicts: list[VerdictOut]
    decisions: list[DecisionOut]
    redactions: list[RedactionOut]
    links: Links | None = None


class ClassifierStats(BaseModel):
    screened: int = Field(description="records with a verdict from this classifier")
    blocked: int
    block_rate: float


class Stats(BaseModel):
    total: int
    by_status: dict[str, int]
    by_category: dict[str, dict[str, int]] = Field(
        description="records per category and action (flag, block)"
    )
    by_day: dict[str, dict[str, int]] = Field(description="records per UTC day and status")
    classifiers: dict[str, ClassifierStats]


class Page(BaseModel):
    items: list[RecordSummary]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last")


Sort = Literal["time", "score"]
Order = Literal["desc", "asc"]
R = GenerationRecord


def conditions(f: RecordFilter) -> list:
    """SQL conditions on generation_records for a filter."""
    where: list = []
    for value, column in (
        (f.tenant, R.tenant),
        (f.user, R.user),
        (f.status, R.status),
        (f.blocked_stage, R.blocked_stage),
        (f.policy_version, R.policy_version),
        (f.model, R.model_id),
    ):
        if value is not None:
            where.append(column == value)
    # Rows are written in time order (the store never gives a later row an earlier created_at),
    # so a time range is a seq range: found with two index lookups, then read along the primary
    # key in whatever order the list wants.
    if f.since is not None:
        where.append(R.seq >= func.coalesce(_first_seq_at_or_after(f.since), _NO_SEQ))
    if f.until is not None:
        where.append(R.seq < func.coalesce(_first_seq_at_or_after(f.until), _NO_SEQ))
    if f.stage or f.classifier or f.category:
        verdict = [VerdictRow.record_seq == R.seq]
        for value, column in (
            (f.stage, VerdictRow.stage),
            (f.classifier, VerdictRow.classifier),
            (f.category, VerdictRow.category),
        ):
            if value is not None:
                verdict.append(column == value)
        if f.min_score is not None:
            verdict.append(VerdictRow.score >= f.min_score)
        where.append(exists().where(*verdict))
    elif f.min_score is not None:
        where.append(R.top_score >= f.min_score)  # the highest verdict score, kept on the record
    if f.reviewed is True:  # decisions are few: look them up first
        where.append(R.seq.in_(select(Decision.record_seq)))
    elif f.reviewed is False:
        where.append(~exists().where(Decision.record_seq == R.seq))
    if f.decision is not None:
        where.append(_latest_decision_is(f.decision))
    if f.q is not None:
        pattern = "%" + f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(
            exists().where(
                RecordContent.record_seq == R.seq, RecordContent.prompt.ilike(pattern, escape="\\")
            )
        )
    return where


_NO_SEQ = 2**62  # greater than any seq


def _first_seq_at_or_after(moment: dt.datetime):
    first = select(R.seq).where(R.created_at >= moment).order_by(R.created_at, R.seq).limit(1)
    return first.scalar_subquery()


def _latest_decision_is(decision: str):
    """Records whose newest decision is `decision` (decisions are few: they are looked up first)."""
    later = aliased(Decision)
    latest = select(Decision.record_seq).where(
        Decision.decision == decision,
        ~exists().where(later.record_seq == Decision.record_seq, later.seq > Decision.seq),
    )
    return R.seq.in_(latest)


def encode_cursor(sort: str, order: str, row: dict[str, Any]) -> str:
    data = {"sort": sort, "order": order, "seq": row["seq"]}
    if sort == "score":
        data["score"] = row["top_score"]
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, order: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        assert isinstance(data, dict) and isinstance(data["seq"], int)
    except (ValueError, binascii.Error, AssertionError, KeyError, TypeError) as exc:
        raise AuditError("field 'cursor': not a cursor this API returned") from exc
    if (data.get("sort"), data.get("order")) != (sort, order):
        raise AuditError(
            f"field 'cursor': it belongs to a list sorted by {data.get('sort')} {data.get('order')}, "
            f"not {sort} {order}"
        )
    if sort == "score" and not isinstance(data.get("score"), int | float):
        raise AuditError("field 'cursor': not a cursor this API returned")
    return data


def _keyset(sort: Sort, order: Order, cursor: str | None) -> tuple[list, list]:
    """ORDER BY and the condition that starts after the cursor."""
    desc = order == "desc"
    by_seq = R.seq.desc() if desc else R.seq.asc()
    order_by = [(R.top_score.desc() if desc else R.top_score.asc()), by_seq] if sort == "score" else [by_seq]
    if cursor is None:
        return order_by, []
    after = decode_cursor(cursor, sort, order)
    beyond = (lambda col, v: col < v) if desc else (lambda col, v: col > v)
    if sort == "time":
        return order_by, [beyond(R.seq, after["seq"])]
    return order_by, [
        or_(
            beyond(R.top_score, after["score"]),
            and_(R.top_score == after["score"], beyond(R.seq, after["seq"])),
        )
    ]


def list_records(
    store: AuditStore,
    f: RecordFilter,
    sort: Sort = "time",
    order: Order = "desc",
    cursor: str | None = None,
    limit: int = 50,
    extra: list | None = None,
) -> Page:
    order_by, start = _keyset(sort, order, cursor)
    query = select(R).where(*conditions(f), *start, *(extra or [])).order_by(*order_by).limit(limit + 1)
    with Session(store.engine) as session:
        rows = [r.model_dump() for r in session.exec(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        items = summaries(session, rows)
    next_cursor = encode_cursor(sort, order, rows[-1]) if more and rows else None
    return Page(items=items, next_cursor=next_cursor)


def review_queue(
    store: AuditStore,
    escalated: bool = False,
    cursor: str | None = None,
    limit: int = 50,
    tenant: str | None = None,
) -> Page:
    """Blocked and flagged records without a decision (or, with `escalated`, whose latest decision
    is an escalation), highest score first."""
    extra = [R.needs_review.is_(True)]
    extra.append(
        _latest_decision_is("escalate") if escalated else ~exists().where(Decision.record_seq == R.seq)
    )
    return list_records(store, RecordFilter(tenant=tenant), "score", "desc", cursor, limit, extra)


def summaries(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The list view of records: columns plus prompt (None once redacted) and latest decision."""
    if not rows:
        return []
    seqs = [r["seq"] for r in rows]
    contents = {
        seq: (prompt, image)
        for seq, prompt, image in session.exec(
            select(RecordContent.record_seq, RecordContent.prompt, RecordContent.input_image_sha256).where(
                RecordContent.record_seq.in_(seqs)
            )
        )
    }
    latest: dict[int, str] = {}
    for record_seq, decision in session.exec(
        select(Decision.record_seq, Decision.decision)
        .where(Decision.record_seq.in_(seqs))
        .order_by(Decision.seq)
    ):
        latest[record_seq] = decision
    return [summary(r, *contents.get(r["seq"], (None, None)), latest.get(r["seq"])) for r in rows]


def summary(
    row: dict[str, Any], prompt: str | None, input_image_sha256: str | None, latest_decision: str | None
) -> dict[str, Any]:
    """The list view of one record; `prompt` and `input_image_sha256` are None once redacted."""
    return {
        "seq": row["seq"],
        "generation_id": row["generation_id"],
        "created_at": utc(row["created_at"]).isoformat(),
        "tenant": row["tenant"],
        "user": row["user"],
        "status": row["status"],
        "flagged": row["flagged"],
        "blocked_stage": row["blocked_stage"],
        "reason": row["reason"],
        "top_score": row["top_score"],
        "top_category": row["top_category"],
        "top_classifier": row["top_classifier"],
        "policy": {"name": row["policy_name"], "version": row["policy_version"]},
        "model": {"id": row["model_id"], "version": row["model_version"]},
        "output_sha256": row["output_sha256"],
        "watermark": watermark_view(
            row["watermark_payload"], row["watermark_method"], row["watermark_key_id"]
        ),
        "manifest_label": row["manifest_label"],
        "prompt": prompt,
        "input_image_sha256": input_image_sha256,
        "redacted": prompt is None,
        "latest_decision": latest_decision,
    }


def watermark_view(payload: str | None, method: str | None, key_id: int | None) -> dict[str, Any]:
    """The invisible watermark a generation carries, as every report shows it."""
    return {"payload": payload, "method": method, "key_id": key_id}


def detail(store: AuditStore, record: GenerationRecord) -> dict[str, Any]:
    """One record with its verdicts, decisions and redactions."""
    content = store.content(record.seq)
    decisions = store.decisions(record.seq)
    out = summary(
        record.model_dump(),
        content.prompt if content else None,
        content.input_image_sha256 if content else None,
        decisions[-1].decision if decisions else None,
    )
    out["row_hash"] = record.row_hash
    out["verdicts"] = [verdict_view(v) for v in store.verdicts(record.seq)]
    out["decisions"] = [decision_view(d) for d in decisions]
    out["redactions"] = [redaction_view(r) for r in store.redactions(record.seq)]
    return out


def verdict_view(v: VerdictRow) -> dict[str, Any]:
    view = {k: getattr(v, k) for k in VERDICT_FIELDS}
    if v.frames is not None:
        view["frames"] = json.loads(v.frames)
    return view


def decision_view(d: Decision) -> dict[str, Any]:
    return {
        "seq": d.seq,
        "created_at": utc(d.created_at).isoformat(),
        "decision": d.decision,
        "reason": d.reason,
        "reviewer": d.reviewer,
        "reviewer_key": d.reviewer_key,
    }


def redaction_view(r: Redaction) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "created_at": utc(r.created_at).isoformat(),
        "reason": r.reason,
        "requested_by": r.requested_by,
    }


def stats(store: AuditStore, f: RecordFilter) -> dict[str, Any]:
    """Counts by status, category (non-allow verdicts) and day; block rate per classifier."""
    where = conditions(f)
    with Session(store.engine) as session:
        by_status = dict(session.exec(select(R.status, func.count()).where(*where).group_by(R.status)).all())
        day = (
            func.date(R.created_at)
            if store.engine.dialect.name == "sqlite"
            else cast(func.timezone("UTC", R.created_at), Date)
        )
        by_day: dict[str, dict[str, int]] = {}
        for d, status, n in session.exec(
            select(day, R.status, func.count()).where(*where).group_by(day, R.status)
        ):
            by_day.setdefault(str(d), {})[status] = n
        joined = select(
            VerdictRow.category, VerdictRow.action, func.count(func.distinct(VerdictRow.record_seq))
        )
        joined = joined.join(R, R.seq == VerdictRow.record_seq).where(*where, VerdictRow.action != "allow")
        by_category: dict[str, dict[str, int]] = {}
        for category, action, n in session.exec(joined.group_by(VerdictRow.category, VerdictRow.action)):
            by_category.setdefault(category, {})[action] = n
        screened = select(VerdictRow.classifier, func.count(func.distinct(VerdictRow.record_seq)))
        screened = (
            screened.join(R, R.seq == VerdictRow.record_seq).where(*where).group_by(VerdictRow.classifier)
        )
        blocked = dict(
            session.exec(
                select(VerdictRow.classifier, func.count(func.distinct(VerdictRow.record_seq)))
                .join(R, R.seq == VerdictRow.record_seq)
                .where(*where, VerdictRow.action == "block")
                .group_by(VerdictRow.classifier)
            ).all()
        )
        per_classifier = {
            name: {
                "screened": n,
                "blocked": blocked.get(name, 0),
                "block_rate": round(blocked.get(name, 0) / n, 6),
            }
            for name, n in session.exec(screened)
        }
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_category": by_category,
        "by_day": dict(sorted(by_day.items())),
        "classifiers": per_classifier,
    }


def iter_records(store: AuditStore, f: RecordFilter, page_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Every matching record, oldest first, with verdicts and decisions; read a page at a time."""
    cursor = None
    while True:
        order_by, start = _keyset("time", "asc", cursor)
        query = select(R).where(*conditions(f), *start).order_by(*order_by).limit(page_size)
        with Session(store.engine) as session:
            rows = [r.model_dump() for r in session.exec(query)]
            if not rows:
                return
            items = summaries(session, rows)
            seqs = [r["seq"] for r in rows]
            verdicts: dict[int, list[dict[str, Any]]] = {}
            for v in session.exec(
                select(VerdictRow)
                .where(VerdictRow.record_seq.in_(seqs))
                .order_by(VerdictRow.record_seq, VerdictRow.position)
            ):
                verdicts.setdefault(v.record_seq, []).append(verdict_view(v))
            decisions: dict[int, list[dict[str, Any]]] = {}
            for d in session.exec(
                select(Decision).where(Decision.record_seq.in_(seqs)).order_by(Decision.seq)
            ):
                decisions.setdefault(d.record_seq, []).append(decision_view(d))
            redacted_at = dict(
                session.exec(
                    select(Redaction.record_seq, Redaction.created_at).where(Redaction.record_seq.in_(seqs))
                ).all()
            )
        for item in items:
            item["verdicts"] = verdicts.get(item["seq"], [])
            item["decisions"] = decisions.get(item["seq"], [])
            if item["seq"] in redacted_at:
                item["redacted_at"] = utc(redacted_at[item["seq"]]).isoformat()
            yield item
        cursor = encode_cursor("time", "asc", rows[-1])


__all__ = [
    "DECISIONS",
    "Page",
    "RecordFilter",
    "detail",
    "iter_records",
    "list_records",
    "review_queue",
    "stats",
]
