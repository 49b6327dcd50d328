"""The audit log: every request, allowed or blocked, in an append-only hash-chained store."""

from audit.models import GenerationRecord, VerdictRow
from audit.store import AuditStore, ChainReport, RecordDraft

__all__ = ["AuditStore", "ChainReport", "GenerationRecord", "RecordDraft", "VerdictRow"]
