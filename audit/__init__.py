"""The audit log: every request, allowed or blocked, in an append-only hash-chained store,
with reviewer decisions, redactions, signed checkpoints and API keys."""

from audit.checkpoint import CheckpointKey
from audit.migrate import SchemaError
from audit.models import Decision, GenerationRecord, Outcome, RecordContent, Redaction, VerdictRow
from audit.store import AuditError, AuditStore, ChainReport, CheckpointStatement, RecordDraft

__all__ = [
    "AuditError",
    "AuditStore",
    "ChainReport",
    "CheckpointKey",
    "CheckpointStatement",
    "Decision",
    "GenerationRecord",
    "Outcome",
    "RecordContent",
    "RecordDraft",
    "Redaction",
    "SchemaError",
    "VerdictRow",
]
