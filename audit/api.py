"""The review API under /v1/audit: records, lookups, decisions, the review queue, statistics,
exports and redactions. Every route needs an API key (`Authorization: Bearer hk_...`):
reviewer and admin keys read everything and decide; admin keys also redact; generator keys read
only their own tenant's records.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from audit import export, queries
from audit.deps import Admin, Caller, Reviewer
from audit.keys import Principal
from audit.models import GenerationRecord
from audit.queries import DecisionOut, Page, RecordDetail, RecordFilter, RedactionOut, Stats
from audit.store import AuditError, AuditStore, RecordNotFound


@dataclass
class ReviewContext:
    """What the review routes need, built once by the app factory."""

    store: AuditStore
    # Renders a PNG strip of a video's frames (provided by the composition: audit decodes no video).
    thumbnail_strip: Callable[[Path], bytes] | None = None


class DecisionIn(BaseModel):
    model_config = {"extra": "forbid"}
    decision: Literal["confirm", "overturn", "escalate"] = Field(
        description="confirm the automated outcome, overturn it, or escalate to a senior reviewer"
    )
    reason: str = Field(min_length=1, max_length=2000, description="why; kept in the audit log for good")


class RedactionIn(BaseModel):
    model_config = {"extra": "forbid"}
    reason: str = Field(min_length=1, max_length=2000, description="the request this redaction answers")


class ListQuery(RecordFilter):
    sort: Literal["time", "score"] = Field(
        "time", description="time: by creation; score: by the highest verdict score"
    )
    order: Literal["desc", "asc"] = "desc"
    cursor: str | None = Field(None, description="next_cursor of the previous page")
    limit: int = Field(50, ge=1, le=500)


class ExportQuery(RecordFilter):
    format: Literal["jsonl", "csv", "dsa"] = Field(
        "jsonl", description="dsa: one EU DSA statement of reasons per blocked record (JSONL)"
    )
    territory: list[str] | None = Field(
        None, description="dsa: territorial_scope country codes (default: the EU member states)"
    )


def _filter(query: RecordFilter) -> RecordFilter:
    return RecordFilter(**query.model_dump(include=set(RecordFilter.model_fields)))


router = APIRouter(prefix="/v1/audit", tags=["audit"])


def get_review(request: Request) -> ReviewContext:
    """The review routes' services (built by the app factory)."""
    return request.app.state.review()


Review = Annotated[ReviewContext, Depends(get_review)]


def _scoped(f: RecordFilter, caller: Principal) -> RecordFilter:
    """Generator keys see their own tenant only."""
    if caller.reviews:
        return f
    if f.tenant is not None and f.tenant != caller.tenant:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"field 'tenant': this key sees tenant {caller.tenant!r} only"
        )
    return f.model_copy(update={"tenant": caller.tenant})


def _visible(record: GenerationRecord | None, caller: Principal, what: str) -> GenerationRecord:
    if record is None or (not caller.reviews and record.tenant != caller.tenant):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no record {what}")
    return record


def _with_links(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    base = str(request.url_for("get_record", generation_id=body["generation_id"]))
    released = body["status"] == "released"
    label = body.get("manifest_label")
    body["links"] = {
        "self": base,
        "video": f"{base}/video" if released else None,
        "thumbnails": f"{base}/thumbnails" if released else None,
        "manifest": str(request.base_url) + f"v1/manifests/{quote(label, safe=':')}" if label else None,
    }
    return body


def _refused(exc: AuditError) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


@router.get("/records", response_model=Page, summary="List records")
def list_records(context: Review, caller: Caller, query: Annotated[ListQuery, Query()]) -> Page:
    """Filtered, sorted, cursor-paginated records. Pages stay stable while records are written."""
    try:
        return queries.list_records(
            context.store,
            _scoped(_filter(query), caller),
            query.sort,
            query.order,
            query.cursor,
            query.limit,
        )
    except AuditError as exc:
        raise _refused(exc) from exc


@router.get("/records/{generation_id}", summary="One record with verdicts and decisions")
def get_record(generation_id: str, context: Review, caller: Caller, request: Request) -> RecordDetail:
    record = _visible(context.store.get(generation_id), caller, f"with generation id {generation_id!r}")
    return RecordDetail(**_with_links(request, queries.detail(context.store, record)))


@router.get("/lookup", summary="Find a record by output sha256, watermark payload or C2PA manifest label")
def lookup(
    context: Review,
    caller: Caller,
    request: Request,
    sha256: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$")] = None,
    watermark: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{1,64}$", description="payload, hex")] = None,
    manifest: Annotated[str | None, Query(min_length=1, max_length=500, description="manifest label")] = None,
) -> RecordDetail:
    given = [(n, v) for n, v in (("sha256", sha256), ("watermark", watermark), ("manifest", manifest)) if v]
    if len(given) != 1:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "give exactly one of the fields 'sha256', 'watermark', 'manifest'",
        )
    name, value = given[0]
    store = context.store
    find = {
        "sha256": lambda v: store.find_by_sha256(v.lower()),
        "watermark": lambda v: store.find_by_payload(v.lower()),
        "manifest": store.find_by_manifest,
    }[name]
    record = _visible(find(value), caller, f"with {name} {value}")
    return RecordDetail(**_with_links(request, queries.detail(store, record)))


@router.get("/records/{generation_id}/video", summary="The released MP4", response_class=FileResponse)
def video(generation_id: str, context: Review, caller: Caller) -> FileResponse:
    record = _visible(context.store.get(generation_id), caller, f"with generation id {generation_id!r}")
    return FileResponse(_released_file(record), media_type="video/mp4", filename=f"{generation_id}.mp4")


@router.get(
    "/records/{generation_id}/thumbnails",
    summary="A PNG strip of frames across the video",
    responses={200: {"content": {"image/png": {}}}},
)
def thumbnails(generation_id: str, context: Review, caller: Caller) -> Response:
    record = _visible(context.store.get(generation_id), caller, f"with generation id {generation_id!r}")
    if context.thumbnail_strip is None:
        raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, "thumbnails are not configured")
    return Response(context.thumbnail_strip(_released_file(record)), media_type="image/png")


@router.post("/records/{generation_id}/decisions", status_code=201, summary="Record a reviewer decision")
def decide(generation_id: str, body: DecisionIn, context: Review, caller: Reviewer) -> DecisionOut:
    """Appends a decision (confirm, overturn, escalate); earlier ones stay in the log."""
    try:
        row = context.store.decide(generation_id, body.decision, body.reason, caller.name, caller.key_id)
    except RecordNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except AuditError as exc:
        raise _refused(exc) from exc
    return DecisionOut(**queries.decision_view(row))


@router.post(
    "/records/{generation_id}/redactions",
    status_code=201,
    summary="Erase a record's prompt and image hash",
)
def redact(generation_id: str, body: RedactionIn, context: Review, caller: Admin) -> RedactionOut:
    """Deletes the prompt and input-image hash and appends a redaction event; the chain stays verifiable."""
    try:
        row = context.store.redact(generation_id, body.reason, f"{caller.name} ({caller.key_id})")
    except RecordNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except AuditError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return RedactionOut(**queries.redaction_view(row))


@router.get("/queue", response_model=Page, summary="The review queue")
def queue(
    context: Review,
    caller: Reviewer,
    escalated: Annotated[bool, Query(description="records whose latest decision is an escalation")] = False,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page:
    """Blocked and flagged records without a decision, highest score first."""
    try:
        return queries.review_queue(context.store, escalated, cursor, limit)
    except AuditError as exc:
        raise _refused(exc) from exc


@router.get("/stats", summary="Counts by status, category and day; block rate per classifier")
def stats(context: Review, caller: Caller, f: Annotated[RecordFilter, Query()]) -> Stats:
    return Stats(**queries.stats(context.store, _scoped(f, caller)))


@router.get(
    "/export",
    summary="Stream a filtered set as JSONL, CSV or DSA statements of reasons",
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
def export_records(
    context: Review, caller: Reviewer, query: Annotated[ExportQuery, Query()]
) -> StreamingResponse:
    territory, format, f = query.territory, query.format, _filter(query)
    if territory and not all(len(t) == 2 and t.isalpha() and t.isupper() for t in territory):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "field 'territory': two-letter upper-case country codes",
        )
    if format == "csv":
        body, media, suffix = export.csv_rows(context.store, f), "text/csv", "csv"
    elif format == "dsa":
        scope = tuple(territory) if territory else export.EU_MEMBER_STATES
        body, media, suffix = (
            export.dsa_statements(context.store, f, scope),
            "application/x-ndjson",
            "dsa.jsonl",
        )
    else:
        body, media, suffix = export.jsonl(context.store, f), "application/x-ndjson", "jsonl"
    return StreamingResponse(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="audit.{suffix}"'}
    )


def _released_file(record: GenerationRecord) -> Path:
    if record.status != "released" or not record.output_path:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"record {record.generation_id} released no file")
    path = Path(record.output_path)
    if not path.is_file():
        raise HTTPException(status.HTTP_410_GONE, f"the released file is no longer at {path}")
    return path
