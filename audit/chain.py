"""How each chained row is hashed. Pure functions: the store writes with them, `verify` re-reads with them.

    row_hash = sha256("<kind>:<prev_hash>:" + canonical JSON of the row's envelope)

A record's envelope holds its verdicts and the hash of its content (prompt and input-image hash,
salted), not the content itself, so erasing the content on request leaves the chain verifiable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

GENESIS = "0" * 64

RECORD_FIELDS = (
    "seq",
    "generation_id",
    "created_at",
    "tenant",
    "user",
    "policy_name",
    "policy_version",
    "model_id",
    "model_version",
    "status",
    "flagged",
    "needs_review",
    "blocked_stage",
    "reason",
    "top_score",
    "top_category",
    "top_classifier",
    "output_sha256",
    "output_path",
    "watermark_payload",
    "watermark_method",
    "watermark_key_id",
    "manifest_label",
    "content_hash",
)
LATER_RECORD_FIELDS = ("tier",)
VERDICT_FIELDS = (
    "stage",
    "classifier",
    "classifier_version",
    "category",
    "score",
    "threshold",
    "action",
    "calibrated",
    "detail",
)
LATER_VERDICT_FIELDS = ("frames",)  # hashed when set, so verdicts written before it verify
DECISION_FIELDS = ("seq", "record_seq", "created_at", "decision", "reason", "reviewer", "reviewer_key")
REDACTION_FIELDS = ("seq", "record_seq", "created_at", "reason", "requested_by")


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; every timestamp here is written in UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _canonical(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return utc(value).isoformat()
    if isinstance(value, float):
        return round(value, 6)  # what every backend's float column round-trips
    return value


def _digest(kind: str, prev_hash: str, envelope: dict[str, Any]) -> str:
    body = json.dumps({k: _canonical(v) for k, v in envelope.items()}, sort_keys=True)
    return hashlib.sha256(f"{kind}:{prev_hash}:{body}".encode()).hexdigest()


def content_hash(salt: str, prompt: str, input_image_sha256: str | None) -> str:
    body = json.dumps(
        {"salt": salt, "prompt": prompt, "input_image_sha256": input_image_sha256}, sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()


def record_hash(prev_hash: str, record: Any, verdicts: list[Any]) -> str:
    """`record` and `verdicts` may be model objects or row mappings (read back by `verify`)."""
    envelope = {name: _get(record, name) for name in RECORD_FIELDS}
    for name in LATER_RECORD_FIELDS:  # added after rows existed: hashed when set, so old rows verify
        if _get(record, name) is not None:
            envelope[name] = _get(record, name)
    envelope["verdicts"] = [_verdict_envelope(v) for v in sorted(verdicts, key=lambda v: _get(v, "position"))]
    return _digest("record", prev_hash, envelope)


def _verdict_envelope(verdict: Any) -> dict[str, Any]:
    envelope = {name: _canonical(_get(verdict, name)) for name in VERDICT_FIELDS}
    for name in LATER_VERDICT_FIELDS:
        value = verdict.get(name) if isinstance(verdict, dict) else getattr(verdict, name, None)
        if value is not None:
            envelope[name] = value
    return envelope


def decision_hash(prev_hash: str, decision: Any) -> str:
    return _digest("decision", prev_hash, {name: _get(decision, name) for name in DECISION_FIELDS})


def redaction_hash(prev_hash: str, redaction: Any) -> str:
    return _digest("redaction", prev_hash, {name: _get(redaction, name) for name in REDACTION_FIELDS})


def checkpoint_message(head_seq: int, head_hash: str, created_at: dt.datetime) -> bytes:
    return f"hallmark-audit-checkpoint/v1:{head_seq}:{head_hash}:{utc(created_at).isoformat()}".encode()


def _get(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, dict) else getattr(row, name)
