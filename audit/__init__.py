"""The audit log: every request, allowed or blocked, in an append-only hash-chained store."""

from audit.models import GenerationRecord, VerdictRow
from audit.store import AuditError, AuditStore, ChainReport, RecordDraft

__all__ = ["AuditError", "AuditStore", "ChainReport", "GenerationRecord", "RecordDraft", "VerdictRow"]
