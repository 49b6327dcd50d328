"""Streaming exports of a filtered set of records: JSONL, CSV, and statements of reasons in the
shape of the EU Digital Services Act Transparency Database API (POST /api/v1/statement, the
field set in force since July 2025) for blocked requests.

Each generator yields text chunks, one record at a time, so an export of a million records holds
one page of them in memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from audit.queries import RecordFilter, iter_records
from audit.store import AuditStore

CSV_COLUMNS = (
    "seq",
    "generation_id",
    "created_at",
    "tenant",
    "user",
    "status",
    "flagged",
    "blocked_stage",
    "reason",
    "top_category",
    "top_classifier",
    "top_score",
    "policy_name",
    "policy_version",
    "model_id",
    "model_version",
    "output_sha256",
    "watermark_payload",
    "manifest_label",
    "latest_decision",
    "redacted",
    "prompt",
    "input_image_sha256",
    "verdicts",
)

# Policy category -> (DSA statement category, category specification keyword). A category that is
# not listed maps to a violation of the terms of service with KEYWORD_OTHER and its own name.
DSA_CATEGORIES: dict[str, tuple[str, str]] = {
    "sexual": ("STATEMENT_CATEGORY_OTHER_VIOLATION_TC", "KEYWORD_ADULT_SEXUAL_MATERIAL"),
    "sexual_minors": ("STATEMENT_CATEGORY_PROTECTION_OF_MINORS", "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"),
    "violence": ("STATEMENT_CATEGORY_VIOLENCE", "KEYWORD_OTHER"),
    "self_harm": ("STATEMENT_CATEGORY_SELF_HARM", "KEYWORD_SELF_MUTILATION"),
    "hate": ("STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", "KEYWORD_HATE_SPEECH"),
    "harassment": ("STATEMENT_CATEGORY_CYBER_VIOLENCE", "KEYWORD_CYBER_HARASSMENT"),
    "extremism": ("STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY", "KEYWORD_TERRORIST_CONTENT"),
    "weapons": ("STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS", "KEYWORD_PROHIBITED_PRODUCTS"),
    "deception": (
        "STATEMENT_CATEGORY_NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS",
        "KEYWORD_MISINFORMATION_DISINFORMATION",
    ),
    "impersonation": ("STATEMENT_CATEGORY_SCAMS_AND_FRAUD", "KEYWORD_IMPERSONATION_ACCOUNT_HIJACKING"),
    "ip": ("STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS", "KEYWORD_TRADEMARK_INFRINGEMENT"),
}
EU_MEMBER_STATES = (
    "AT",
    "BE",
    "BG",
    "CY",
    "CZ",
    "DE",
    "DK",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "HU",
    "IE",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SE",
    "SI",
    "SK",
)
# Stages before generation refuse the request itself (text, and an image when one was given);
# later stages withhold a generated video.
_PRE_GENERATION = ("request", "prompt", "image")


def jsonl(store: AuditStore, f: RecordFilter) -> Iterator[str]:
    for item in iter_records(store, f):
        yield json.dumps(item, sort_keys=True) + "\n"


def csv_rows(store: AuditStore, f: RecordFilter) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for item in iter_records(store, f):
        flat = {
            **item,
            "policy_name": item["policy"]["name"],
            "policy_version": item["policy"]["version"],
            "model_id": item["model"]["id"],
            "model_version": item["model"]["version"],
            "watermark_payload": item["watermark"]["payload"],
            "verdicts": json.dumps(item["verdicts"], sort_keys=True),
        }
        writer.writerow(["" if flat[c] is None else flat[c] for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def dsa_statements(
    store: AuditStore, f: RecordFilter, territorial_scope: tuple[str, ...] = EU_MEMBER_STATES
) -> Iterator[str]:
    """JSONL, one statement of reasons per blocked record."""
    blocked = f.model_copy(update={"status": "blocked"})
    for item in iter_records(store, blocked):
        yield json.dumps(statement_of_reasons(item, territorial_scope), sort_keys=True) + "\n"


def statement_of_reasons(item: dict[str, Any], territorial_scope: tuple[str, ...]) -> dict[str, Any]:
    """One blocked record as a DSA statement of reasons (automated detection; a reviewer's
    confirmation makes the decision partially automated)."""
    blocking = next((v for v in item["verdicts"] if v["action"] == "block"), None)
    category = blocking["category"] if blocking else (item["top_category"] or "other")
    statement_category, keyword = DSA_CATEGORIES.get(
        category, ("STATEMENT_CATEGORY_OTHER_VIOLATION_TC", "KEYWORD_OTHER")
    )
    before_generation = item["blocked_stage"] in _PRE_GENERATION
    content_type = (
        ["CONTENT_TYPE_TEXT"] if before_generation else ["CONTENT_TYPE_SYNTHETIC_MEDIA", "CONTENT_TYPE_VIDEO"]
    )
    if (before_generation and item["input_image_sha256"]) or item["blocked_stage"] == "image":
        content_type.append("CONTENT_TYPE_IMAGE")
    reviewed = [d for d in item["decisions"] if d["decision"] in ("confirm", "overturn")]
    policy = item["policy"]
    facts = (
        f"Automated screening under policy {policy['name']} version {policy['version']} refused the "
        f"request at stage '{item['blocked_stage']}': {item['reason'] or 'blocked'}."
    )
    if blocking:
        facts += (
            f" Classifier {blocking['classifier']} {blocking['classifier_version']} scored "
            f"{blocking['score']:.3f} for '{category}' against a threshold of {blocking['threshold']:.3f}."
        )
    if reviewed:
        facts += f" A human reviewer then decided: {reviewed[-1]['decision']} ({reviewed[-1]['reason']})."
    date = item["created_at"][:10]
    ground = f"Generation policy {policy['name']} {policy['version']}, category '{category}'"
    statement: dict[str, Any] = {
        "puid": item["generation_id"],
        "decision_visibility": ["DECISION_VISIBILITY_OTHER"],
        "decision_visibility_other": (
            "generation request refused: no video was produced"
            if before_generation
            else "generated video withheld: it was never released"
        ),
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "incompatible_content_ground": ground[:500],
        "incompatible_content_explanation": (item["reason"] or f"blocked in category '{category}'")[:2000],
        "content_type": content_type,
        "category": statement_category,
        "category_specification": [keyword],
        "territorial_scope": list(territorial_scope),
        "content_date": date,
        "application_date": date,
        "decision_facts": facts[:5000],
        "source_type": "SOURCE_VOLUNTARY",
        "automated_detection": "Yes",
        "automated_decision": "AUTOMATED_DECISION_PARTIALLY" if reviewed else "AUTOMATED_DECISION_FULLY",
    }
    if keyword == "KEYWORD_OTHER":
        statement["category_specification_other"] = category[:500]
    return statement
