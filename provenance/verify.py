"""verify(file): what a third party can establish about a video they were handed.

One answer first (was it made by this generator, under which policy, has it been altered since),
then the evidence: the embedded C2PA manifest as c2pa-rs validates it, the invisible watermark,
the original manifest recovered through the watermark when the embedded one is gone or broken,
and the audit record when this deployment's store is at hand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from audit import AuditStore
from provenance.manifest import SCREENING_ASSERTION, ManifestReading, read_manifest, soft_binding_value
from provenance.resolve import ManifestResolver, ResolutionError, StoreResolver
from provenance.video import VideoError, iter_frames
from provenance.watermark import VideoWatermark

# c2pa-rs validation codes of the hard binding: the hash of the file's bytes in the manifest.
HASH_CODES = (
    "assertion.bmffHash.",
    "assertion.dataHash.",
    "assertion.boxesHash.",
    "assertion.collectionHash.",
)


class ValidationCode(BaseModel):
    code: str
    explanation: str | None = None


class IngredientReport(BaseModel):
    title: str | None = None
    format: str | None = None
    relationship: str | None = None
    manifest: str | None = None  # the ingredient's own manifest label, when it had one
    claim_generator: str | None = None
    signer: str | None = None
    failures: list[str] = []  # the ingredient manifest's validation failures when it was added


class ManifestReport(BaseModel):
    present: bool
    valid: bool = False  # the claim signature verifies and the manifest is well formed
    trusted: bool = False  # the signer chains to a configured trust anchor
    validation_state: str | None = None  # c2pa-rs: Trusted, Valid or Invalid
    hash_binding: str = "unknown"  # intact, broken or unknown: do the file's bytes match the manifest
    failures: list[str] = []  # every failure code, as c2pa-rs reports it
    failure_details: list[ValidationCode] = []
    label: str | None = None
    claim_generator: str | None = None
    signer: str | None = None
    signer_issuer: str | None = None
    # The pin (SHA-256 of the signing key's SubjectPublicKeyInfo) of whoever signed it, and whether
    # that key is one of this deployment's signing identities: names can be copied, keys cannot.
    signer_spki_sha256: str | None = None
    own_signer: bool = False
    timestamp: str | None = None  # from a timestamp authority; None when signed without one
    timestamp_codes: list[str] = []  # c2pa-rs timeStamp.* codes, e.g. timeStamp.validated
    actions: list[dict[str, Any]] = []
    model: str | None = None
    digital_source_type: str | None = None
    policy: str | None = None
    screening: dict[str, Any] | None = None
    soft_binding: dict[str, Any] | None = None  # {alg, value}: what the watermark should carry
    training_mining: dict[str, Any] | None = None
    ingredients: list[IngredientReport] = []
    thumbnail: bool = False
    error: str | None = None


class WatermarkReport(BaseModel):
    detected: bool
    payload: str | None = None  # hex
    key_id: int | None = None
    method: str
    false_positive_probability: float | None = None  # chance an unmarked video reads like this
    frames_read: int = 0
    soft_binding: dict[str, str] | None = None  # {alg, value} to query a resolution service
    details: dict[str, float | int] = {}
    error: str | None = None


class RecoveryReport(BaseModel):
    """The original manifest, found through the watermark when the file's own is gone or broken."""

    attempted: bool
    source: str | None = None  # "local audit store" or a resolver URL
    manifest_id: str | None = None
    manifest: ManifestReport | None = None  # validated against this file
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


class Conclusion(BaseModel):
    made_by_generator: bool | None  # None: cannot tell
    generator: str | None = None
    policy: str | None = None
    altered: bool | None  # since signing; None: cannot tell
    summary: str


class VerificationReport(BaseModel):
    file: str
    sha256: str
    conclusion: Conclusion
    manifest: ManifestReport
    watermark: WatermarkReport
    recovery: RecoveryReport
    record: RecordReport | None = None

    def summary(self) -> list[str]:
        """The report in plain words, one line per finding."""
        lines = [self.conclusion.summary, ""]
        lines += _manifest_lines("C2PA manifest", self.manifest)
        w = self.watermark
        if w.detected:
            key = f", key id {w.key_id}" if w.key_id is not None else ""
            lines.append(
                f"Invisible watermark: detected, payload {w.payload}{key} ({w.method}; false-positive "
                f"probability {w.false_positive_probability:.1e}; {w.frames_read} frames read)"
            )
        else:
            lines.append(f"Invisible watermark: not detected ({w.method}){': ' + w.error if w.error else ''}")
        r = self.recovery
        if r.manifest is not None:
            lines += _manifest_lines(
                f"Original manifest, recovered from {r.source} by the watermark", r.manifest
            )
        elif r.attempted:
            lines.append("Original manifest: not recovered" + (f" ({r.error})" if r.error else " (no match)"))
        if self.record:
            rec = self.record
            lines.append(
                f"Audit record: {rec.generation_id} ({rec.status}, {rec.created_at}), policy {rec.policy}, "
                f"model {rec.model}; matched by {rec.matched_by}; file "
                + ("identical to the released file" if rec.matches_file else "differs from the released file")
            )
        return lines


def _manifest_lines(title: str, m: ManifestReport) -> list[str]:
    if not m.present:
        return [f"{title}: not found (never signed, or stripped)" + (f"; {m.error}" if m.error else "")]
    lines = [
        f"{title}: signature {'valid' if m.valid else 'INVALID'}; signer "
        f"{'trusted' if m.trusted else 'NOT trusted'} against the configured trust anchors; "
        f"hash binding {m.hash_binding}" + (f" ({m.validation_state})" if m.validation_state else "")
    ]
    for detail in m.failure_details:
        lines.append(f"  failure {detail.code}: {detail.explanation or ''}".rstrip(": "))
    if m.label:
        lines.append(
            f"  manifest {m.label}" + (f", claim generator {m.claim_generator}" if m.claim_generator else "")
        )
    if m.signer:
        lines.append(
            f"  signed by {m.signer}" + (f", issued by {m.signer_issuer}" if m.signer_issuer else "")
        )
    lines.append(
        f"  timestamp {m.timestamp} "
        f"(timestamp authority; {', '.join(m.timestamp_codes) or 'no timestamp codes'})"
        if m.timestamp
        else "  timestamp: none (signed without a timestamp authority; the signing time is not attested)"
    )
    for action in m.actions:
        agent = action.get("softwareAgent") or {}
        agent_name = agent.get("name") if isinstance(agent, dict) else agent
        lines.append(f"  action {action.get('action')}" + (f" by {agent_name}" if agent_name else ""))
    if m.model:
        lines.append(f"  model {m.model}")
    if m.policy:
        lines.append(f"  screened under policy {m.policy}")
    for ing in m.ingredients:
        own = f", with its own manifest {ing.manifest}" if ing.manifest else ", no manifest of its own"
        signer = f" signed by {ing.signer}" if ing.signer else ""
        lines.append(f"  ingredient {ing.title} ({ing.format}, {ing.relationship}){own}{signer}")
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
    resolver: ManifestResolver | None = None,
    signers: Collection[str] = (),
    fetch_remote: bool = False,
    max_pixels: int | None = None,
) -> VerificationReport:
    """Check the C2PA manifest, detect the invisible watermark, recover the original manifest when
    the file's own is missing or broken, and look the file up in the store.

    Frames are streamed to the detector, which stops at the first window that decodes; at most
    `max_frames` are read, so time and memory stay bounded whatever the file claims. `resolver`
    defaults to the store's. `signers`: the pins (`identity.spki_sha256`) of this deployment's
    signing keys, current and retired; only a manifest signed with one of them can say "made by
    this generator". `fetch_remote`: fetch a manifest from a URL the file names (never by
    default: a verifier must not make requests a file chooses). `max_pixels`: the largest frame
    decoded (VideoError beyond it, before decoding). Raises VideoError for a file that is neither
    a video nor a C2PA asset.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    sha = sha256_file(path)
    manifest = manifest_report(read_manifest(path, trust_anchors_pem, fetch_remote=fetch_remote), signers)
    try:
        frames = iter_frames(path, max_frames, format=watermark.input_format, max_pixels=max_pixels)
        reading = watermark.detect(frames)
        mark = WatermarkReport(**reading.__dict__)
    except VideoError as exc:
        if not manifest.present:
            raise VideoError(
                f"{path.name}: not a readable video: {str(exc).replace(str(path) + ': ', '')}"
            ) from exc
        mark = WatermarkReport(detected=False, method=watermark.name, error=str(exc))
    if mark.detected and mark.payload:
        value = soft_binding_value(mark.payload, mark.key_id)
        mark.soft_binding = {"alg": watermark.soft_binding_alg, "value": value}

    if resolver is None and store is not None:
        resolver = StoreResolver(store, watermark)
    recovery = RecoveryReport(attempted=False)
    suspect = not manifest.present or not manifest.valid or manifest.hash_binding == "broken"
    if (suspect or watermark_mismatch(manifest, mark)) and mark.soft_binding and resolver is not None:
        recovery = _recover(path, trust_anchors_pem, resolver, mark.soft_binding, signers)
    record = _lookup(store, mark.payload, sha) if store is not None else None
    return VerificationReport(
        file=str(path),
        sha256=sha,
        conclusion=conclude(manifest, mark, recovery),
        manifest=manifest,
        watermark=mark,
        recovery=recovery,
        record=record,
    )


def watermark_mismatch(m: ManifestReport, w: WatermarkReport) -> bool:
    """The pictures carry this generator's watermark, but the embedded manifest is not the one
    they were released with: it does not name that watermark, or it names it but was signed by
    someone else (content re-signed, or a manifest copied onto it)."""
    if not (m.present and w.detected and w.soft_binding):
        return False
    return m.soft_binding != w.soft_binding or not m.own_signer


def made_by_hallmark(m: ManifestReport) -> bool:
    """A trusted manifest signed with one of this deployment's own keys that states Hallmark's
    claims: its screening assertion and its watermark. (Whether the pictures carry that
    watermark is the caller's to check: `conclude` does for an embedded manifest, `_recover`
    for a recovered one.)"""
    return bool(
        m.trusted
        and m.own_signer
        and m.screening is not None
        and (m.claim_generator or "").startswith("Hallmark")
        and m.soft_binding
    )


def _recover(
    path: Path,
    anchors: str | None,
    resolver: ManifestResolver,
    binding: dict[str, str],
    signers: Collection[str],
) -> RecoveryReport:
    try:
        found = resolver.resolve(binding["alg"], binding["value"])
    except ResolutionError as exc:
        return RecoveryReport(attempted=True, error=str(exc))
    if found is None:
        return RecoveryReport(attempted=True)
    recovered = manifest_report(read_manifest(path, anchors, manifest_store=found.store), signers)
    problem = None
    if recovered.label != found.manifest_id:
        problem = f"the resolver's manifest store is labelled {recovered.label}, not {found.manifest_id}"
    elif recovered.soft_binding != binding:
        # Whoever answered, the original must name the very watermark that led to it.
        problem = "the recovered manifest's soft binding is not this watermark"
    if problem:
        return RecoveryReport(
            attempted=True, source=found.source, manifest_id=found.manifest_id, error=f"{problem}: ignored"
        )
    return RecoveryReport(
        attempted=True, source=found.source, manifest_id=found.manifest_id, manifest=recovered
    )


def conclude(m: ManifestReport, w: WatermarkReport, r: RecoveryReport) -> Conclusion:
    """The one answer: made by this generator? under which policy? altered since?"""
    mismatch = watermark_mismatch(m, w)
    if m.present and m.valid and m.hash_binding != "broken" and not mismatch:
        unaltered = m.hash_binding == "intact"
        tail = "Not altered since it was signed." if unaltered else "The hash binding was not checked."

        def embedded(made_by: bool | None, summary: str) -> Conclusion:
            """The answer from the embedded manifest, which validates and matches the file."""
            return Conclusion(
                made_by_generator=made_by,
                generator=m.claim_generator,
                policy=m.policy,
                altered=False if unaltered else None,
                summary=summary,
            )

        if not m.trusted:
            return embedded(
                None if m.own_signer else False,
                f"Signed by {m.signer}, which is NOT trusted against the configured trust "
                f"anchors: the manifest claims {m.claim_generator or 'an unnamed generator'}"
                f", but who made it cannot be confirmed.",
            )
        if not made_by_hallmark(m):
            claims = (m.claim_generator or "").startswith("Hallmark") or m.screening is not None
            why = (
                "it claims to be Hallmark's, but it is not signed with this generator's signing key"
                if claims
                else "not a manifest of this generator"
            )
            return embedded(
                False,
                f"Signed by {m.signer} (trusted), made with {m.claim_generator or 'an unnamed tool'}: "
                f"{why}. {tail}",
            )
        if not w.detected:
            return embedded(
                None,
                f"Signed with this generator's key by {m.signer} (trusted), but the pictures do "
                "not carry the watermark its manifest names"
                + (f" ({w.error})" if w.error else "")
                + f": whether it was made here cannot be confirmed. {tail}",
            )
        return embedded(
            True,
            f"Authentic: made by {m.claim_generator}, model {m.model or 'not stated'}, "
            f"screened under policy {m.policy or 'not stated'}, signed by {m.signer} "
            f"(trusted, this generator's signing key). {tail}",
        )
    original = r.manifest
    if original is not None and original.valid:
        if mismatch:
            what = (
                f"the embedded manifest (signed by {m.signer}, {m.claim_generator}) is not the one it "
                "was released with"
            )
        elif m.present:
            what = "the embedded manifest no longer matches the file"
        else:
            what = "it carries no manifest"
        how = (
            "Its content is byte-for-byte what was signed; only the manifest was removed."
            if original.hash_binding == "intact" and not m.present
            else "The file was re-encoded, edited or stripped since it was signed."
        )
        ours = made_by_hallmark(original)
        verb = "Made by" if ours else "Claims to be made by"
        trusted = "trusted" if original.trusted else "NOT trusted"
        return Conclusion(
            made_by_generator=True if ours else None,
            generator=original.claim_generator,
            policy=original.policy,
            altered=not (original.hash_binding == "intact" and not m.present),
            summary=f"{verb} {original.claim_generator}, model {original.model}, under policy "
            f"{original.policy}: {what}, but its watermark (false-positive probability "
            f"{w.false_positive_probability:.1e}) resolves to the original manifest "
            f"{original.label}, signed by {original.signer} ({trusted}). {how}",
        )
    lost = f" ({r.error})" if r.error else ""
    if w.detected:
        # Only a holder of this deployment's watermark key can embed it: the pictures came from here.
        state = (
            "the manifest does not validate (" + (", ".join(m.failures) or "invalid") + ")"
            if m.present and not mismatch
            else "its manifest is not the one it was released with"
            if mismatch
            else "it carries no manifest"
        )
        return Conclusion(
            made_by_generator=True,
            altered=True,
            summary=f"Watermarked by this generator's key (id {w.key_id}, false-positive "
            f"probability {w.false_positive_probability:.1e}), but {state}, and the original "
            f"manifest could not be recovered{lost}. Altered since release.",
        )
    if m.present:
        codes = ", ".join(m.failures) or m.error or "invalid"
        if m.hash_binding == "broken" or not m.label:
            return Conclusion(
                made_by_generator=None,
                generator=m.claim_generator,
                policy=m.policy,
                altered=True,
                summary=f"Altered or corrupted after signing: the manifest does not validate ({codes}).",
            )
        return Conclusion(
            made_by_generator=None,
            generator=m.claim_generator,
            policy=m.policy,
            altered=None,
            summary=f"The manifest's signature cannot be validated ({codes}): who made the video "
            "and whether it was altered cannot be confirmed.",
        )
    return Conclusion(
        made_by_generator=None,
        altered=None,
        summary="No provenance found: no C2PA manifest and no watermark of this generator. "
        "That does not show the video was not generated.",
    )


def manifest_report(reading: ManifestReading, signers: Collection[str] = ()) -> ManifestReport:
    """The report of one manifest. Assertions are data anyone can sign: fields of the wrong shape
    are left out, and a manifest that cannot be read at all is reported with an error."""
    if not reading.present:
        return ManifestReport(present=False, error=reading.error)
    try:
        report = _manifest_report(reading)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        report = ManifestReport(
            present=True,
            validation_state=reading.validation_state,
            failures=reading.failures,
            error=f"unreadable manifest: {type(exc).__name__}: {exc}",
        )
    report.signer_spki_sha256 = reading.signer_spki_sha256
    report.own_signer = reading.signer_spki_sha256 is not None and reading.signer_spki_sha256 in signers
    return report


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _manifest_report(reading: ManifestReading) -> ManifestReport:
    active_results = _dict(reading.results.get("activeManifest"))
    failures = [f for f in active_results.get("failure") or [] if isinstance(f, dict)]
    successes = [s for s in active_results.get("success") or [] if isinstance(s, dict)]
    codes = [str(f.get("code")) for f in failures]
    hash_failed = any(c.startswith(HASH_CODES) for c in codes)
    hash_matched = any(
        str(s.get("code")).startswith(HASH_CODES) and str(s.get("code")).endswith(".match") for s in successes
    )
    report = ManifestReport(
        present=True,
        valid=reading.validation_state in ("Valid", "Trusted"),
        trusted=reading.validation_state == "Trusted",
        validation_state=reading.validation_state,
        hash_binding="broken" if hash_failed else "intact" if hash_matched else "unknown",
        failures=codes,
        failure_details=[
            ValidationCode(code=c, explanation=_str(f.get("explanation")))
            for c, f in zip(codes, failures, strict=True)
        ],
        timestamp_codes=[
            str(x.get("code")) for x in failures + successes if str(x.get("code")).startswith("timeStamp.")
        ],
        error=reading.error,
    )
    # c2pa-rs says Invalid when only the hash binding fails; the claim signature is still checked,
    # and reported on its own. Any other failure (here or in the ingredients) keeps it invalid.
    success_codes = {str(s.get("code")) for s in successes}
    deltas = reading.results.get("ingredientDeltas") or []
    if (
        reading.validation_state == "Invalid"
        and codes
        and all(c.startswith(HASH_CODES) for c in codes)
        and "claimSignature.validated" in success_codes
        and not deltas
    ):
        report.valid = True
        report.trusted = "signingCredential.trusted" in success_codes
    active = _dict(reading.active)
    if not active:
        return report
    report.label = _str(active.get("label"))
    generator = _dict((active.get("claim_generator_info") or [{}])[0])
    report.claim_generator = " ".join(str(generator.get(k, "")) for k in ("name", "version")).strip() or None
    signature = _dict(active.get("signature_info"))
    report.signer = _str(signature.get("common_name")) or _str(signature.get("issuer"))
    report.signer_issuer = _str(signature.get("issuer"))
    report.timestamp = _str(signature.get("time"))
    report.thumbnail = bool(active.get("thumbnail"))
    for assertion in active.get("assertions") or []:
        label, data = _str(_dict(assertion).get("label")) or "", _dict(_dict(assertion).get("data"))
        if label.startswith("c2pa.actions"):
            report.actions = [a for a in data.get("actions") or [] if isinstance(a, dict)]
        elif label == SCREENING_ASSERTION:
            report.screening = data
            report.policy = _str(data.get("policy"))
        elif label == "c2pa.soft-binding":
            block = _dict((data.get("blocks") or [{}])[0])
            alg, value = _str(data.get("alg")), _str(block.get("value"))
            report.soft_binding = {"alg": alg, "value": value} if alg and value else None
        elif label in ("c2pa.training-mining", "cawg.training-mining") and report.training_mining is None:
            report.training_mining = _dict(data.get("entries")) or None
    created = next((a for a in report.actions if a.get("action") == "c2pa.created"), None)
    if created:
        report.digital_source_type = _str(created.get("digitalSourceType"))
        agent = _dict(created.get("softwareAgent"))
        if agent:
            report.model = f"{agent.get('name')} {agent.get('version', '')}".strip()
    for ingredient in active.get("ingredients") or []:
        ingredient = _dict(ingredient)
        label = _str(ingredient.get("active_manifest"))
        own = _dict(reading.manifests.get(label)) if label else {}
        own_generator = _dict((own.get("claim_generator_info") or [{}])[0])
        results = _dict(_dict(ingredient.get("validation_results")).get("activeManifest"))
        report.ingredients.append(
            IngredientReport(
                title=_str(ingredient.get("title")),
                format=_str(ingredient.get("format")),
                relationship=_str(ingredient.get("relationship")),
                manifest=label,
                claim_generator=" ".join(str(own_generator.get(k, "")) for k in ("name", "version")).strip()
                or None,
                signer=_str(_dict(own.get("signature_info")).get("common_name")),
                failures=[str(_dict(f).get("code")) for f in results.get("failure") or []],
            )
        )
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
