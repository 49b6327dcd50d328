"""verify(file): what a third party can establish about a video they were handed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from audit import AuditStore
from provenance.manifest import SCREENING_ASSERTION, read_manifest
from provenance.video import VideoError, iter_frames
from provenance.watermark import VideoWatermark


class ManifestReport(BaseModel):
    present: bool
    valid: bool = False
    trusted: bool = False
    validation_state: str | None = None
    failures: list[str] = []
    label: str | None = None
    claim_generator: str | None = None
    signer: str | None = None
    actions: list[dict[str, Any]] = []
    model: str | None = None
    screening: dict[str, Any] | None = None
    soft_binding: dict[str, Any] | None = None  # {alg, value}: what the watermark should carry
    error: str | None = None


class WatermarkReport(BaseModel):
    detected: bool
    payload: str | None = None  # hex
    key_id: int | None = None
    method: str
    false_positive_probability: float | None = None  # chance an unmarked video reads like this
    frames_read: int = 0
    details: dict[str, float | int] = {}
    error: str | None = None


class RecordReport(BaseModel):
    generation_id: str
    status: str
    created_at: str
    policy: str
    model: str
    output_sha256: str | None
    matches_file: bool  # the file's sha256 is the one recorded at release
    matched_by: str


class VerificationReport(BaseModel):
    file: str
    sha256: str
    manifest: ManifestReport
    watermark: WatermarkReport
    record: RecordReport | None = None

    def summary(self) -> list[str]:
        """The report in plain words, one line per finding."""
        m, w = self.manifest, self.watermark
        lines = []
        if not m.present:
            lines.append(
                "C2PA manifest: not found (never signed, or stripped)" + (f"; {m.error}" if m.error else "")
            )
        else:
            lines.append(
                f"C2PA manifest: found; signature {'valid' if m.valid else 'INVALID'}; "
                f"signer {'trusted' if m.trusted else 'NOT trusted'} against the configured trust anchors"
                + (f" ({m.validation_state})" if m.validation_state else "")
            )
            if m.failures:
                lines.append("  validation failures: " + ", ".join(m.failures))
            if m.signer:
                lines.append(f"  signed by: {m.signer}")
            for action in m.actions:
                agent = action.get("softwareAgent") or {}
                agent_name = agent.get("name") if isinstance(agent, dict) else agent
                lines.append(
                    f"  action: {action.get('action')}" + (f" by {agent_name}" if agent_name else "")
                )
            if m.model:
                lines.append(f"  model: {m.model}")
            if m.screening:
                lines.append(f"  policy: {m.screening.get('policy')}")
        if w.detected:
            key = f", key id {w.key_id}" if w.key_id is not None else ""
            lines.append(f"Invisible watermark: detected, payload {w.payload}{key} ({w.method}; false-positive "
                         f"probability {w.false_positive_probability:.1e}; {w.frames_read} frames read)")  # fmt: skip
        else:
            lines.append(f"Invisible watermark: not detected ({w.method}){': ' + w.error if w.error else ''}")
        if self.record:
            r = self.record
            lines.append(
                f"Audit record: {r.generation_id} ({r.status}, {r.created_at}), policy {r.policy}, "
                f"model {r.model}; matched by {r.matched_by}; file "
                + ("identical to the released file" if r.matches_file else "differs from the released file")
            )
        else:
            lines.append("Audit record: none found in the local store")
        return lines


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(
    path: Path,
    trust_anchors_pem: str | None,
    watermark: VideoWatermark,
    store: AuditStore | None = None,
    max_frames: int = 240,
) -> VerificationReport:
    """Check the C2PA manifest, detect the invisible watermark and look the file up in the store.

    Frames are streamed to the detector, which stops at the first window that decodes; at most
    `max_frames` are read, so time and memory stay bounded whatever the file claims.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    sha = sha256_file(path)
    manifest = _manifest_report(path, trust_anchors_pem)
    try:
        reading = watermark.detect(iter_frames(path, max_frames, format=watermark.input_format))
        mark = WatermarkReport(**reading.__dict__)
    except VideoError as exc:
        mark = WatermarkReport(detected=False, method=watermark.name, error=str(exc))
    record = _lookup(store, mark.payload, sha) if store is not None else None
    return VerificationReport(file=str(path), sha256=sha, manifest=manifest, watermark=mark, record=record)


def _manifest_report(path: Path, trust_anchors_pem: str | None) -> ManifestReport:
    reading = read_manifest(path, trust_anchors_pem)
    if not reading.present:
        return ManifestReport(present=False)
    report = ManifestReport(
        present=True,
        valid=reading.validation_state in ("Valid", "Trusted"),
        trusted=reading.validation_state == "Trusted",
        validation_state=reading.validation_state,
        failures=reading.failures,
        error=reading.error,
    )
    active = reading.active
    if not active:
        return report
    report.label = active.get("label")
    generators = active.get("claim_generator_info") or []
    if generators:
        report.claim_generator = " ".join(str(generators[0].get(k, "")) for k in ("name", "version")).strip()
    signature = active.get("signature_info") or {}
    report.signer = signature.get("common_name") or signature.get("issuer")
    for assertion in active.get("assertions", []):
        if assertion["label"].startswith("c2pa.actions"):
            report.actions = assertion["data"].get("actions", [])
        elif assertion["label"] == SCREENING_ASSERTION:
            report.screening = assertion["data"]
        elif assertion["label"] == "c2pa.soft-binding":
            blocks = assertion["data"].get("blocks") or [{}]
            report.soft_binding = {"alg": assertion["data"].get("alg"), "value": blocks[0].get("value")}
    created = next((a for a in report.actions if a.get("action") == "c2pa.created"), None)
    if created and isinstance(created.get("softwareAgent"), dict):
        agent = created["softwareAgent"]
        report.model = f"{agent.get('name')} {agent.get('version', '')}".strip()
    return report


def _lookup(store: AuditStore, payload: str | None, sha: str) -> RecordReport | None:
    record = store.find_by_sha256(sha)
    matched_by = "file sha256"
    if record is None and payload:
        record = store.find_by_payload(payload)
        matched_by = "watermark payload"
    if record is None:
        return None
    return RecordReport(
        generation_id=record.generation_id,
        status=record.status,
        created_at=record.created_at.isoformat(),
        policy=f"{record.policy_name}@{record.policy_version}",
        model=f"{record.model_id} {record.model_version}",
        output_sha256=record.output_sha256,
        matches_file=record.output_sha256 == sha,
        matched_by=matched_by,
    )
