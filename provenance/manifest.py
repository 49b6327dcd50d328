"""C2PA manifests: build the manifest for a generation, sign an MP4 with c2pa-python, read it back."""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import c2pa
import numpy as np

from provenance.certs import SignCallback, SigningMaterial, c2pa_algorithm, check_chain
from provenance.identity import embedded_store, signer_pin
from provenance.tilemark import PAYLOAD_BITS

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SCREENING_ASSERTION = "org.hallmark.screening"
THUMBNAIL_ID = "thumbnail.jpg"


class SigningError(RuntimeError):
    """The manifest could not be built, signed or read back."""


@dataclass(frozen=True)
class Ingredient:
    """An input the video was made from, as the user supplied it (its own C2PA manifest included)."""

    data: bytes
    media_type: str  # image/png, image/jpeg...
    title: str


@dataclass(frozen=True)
class ManifestFacts:
    """What a generation's manifest states."""

    generation_id: str
    title: str
    model_name: str
    model_version: str
    policy: str  # name@version
    screening: dict[str, Any]  # classifiers, highest score per category, uncalibrated ones
    watermark_method: str
    watermark_payload: str  # hex
    watermark_alg: str  # soft-binding algorithm name, e.g. org.hallmark.tilemark.v1
    claim_generator_version: str
    watermark_key_id: int | None = None  # the embedding key, for keyed methods
    training_mining: str = "notAllowed"  # allowed, notAllowed or constrained, from the policy
    thumbnail_jpeg: bytes | None = None  # the claim thumbnail
    ingredient: Ingredient | None = None
    extra_assertions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SignedManifest:
    label: str  # the active manifest's label, urn:c2pa:...
    store: bytes  # the C2PA manifest store as embedded (application/c2pa): kept for recovery
    timestamped: bool  # countersigned by a timestamp authority
    warning: str | None = None


def soft_binding_value(payload_hex: str, key_id: int | None) -> str:
    """Base64 of what the watermark carries: the key id byte (keyed methods) and the payload."""
    key = bytes([key_id]) if key_id is not None else b""
    return base64.b64encode(key + bytes.fromhex(payload_hex)).decode()


def parse_soft_binding_value(value: str, keyed: bool) -> tuple[str, int | None]:
    """(payload hex, key id) from a soft-binding value; ValueError when it is not one of ours."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("value is not base64") from exc
    if len(raw) != PAYLOAD_BITS // 8 + int(keyed):
        raise ValueError(f"value must decode to {PAYLOAD_BITS // 8 + int(keyed)} bytes, got {len(raw)}")
    return (raw[1:].hex(), raw[0]) if keyed else (raw.hex(), None)


def training_mining_assertions(use: str) -> list[dict[str, Any]]:
    """The policy's training and data mining permission, as C2PA 2.x and CAWG readers look for it."""
    c2pa_uses = ("c2pa.ai_generative_training", "c2pa.ai_inference", "c2pa.ai_training", "c2pa.data_mining")
    return [
        {"label": "c2pa.training-mining", "data": {"entries": {u: {"use": use} for u in c2pa_uses}}},
        {
            "label": "cawg.training-mining",
            "data": {"entries": {u.replace("c2pa.", "cawg."): {"use": use} for u in c2pa_uses}},
        },
    ]


def build_manifest(facts: ManifestFacts) -> dict[str, Any]:
    actions = [
        {
            "action": "c2pa.created",
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "softwareAgent": {"name": facts.model_name, "version": facts.model_version},
        },
        {
            "action": "c2pa.watermarked",
            "softwareAgent": {"name": facts.watermark_method},
            "parameters": {
                "description": "invisible watermark carrying the generation key"
                + (
                    f" (watermark key id {facts.watermark_key_id})"
                    if facts.watermark_key_id is not None
                    else ""
                )
            },
        },
    ]
    if facts.ingredient is not None:
        actions[0]["parameters"] = {"description": "generated from an input image (ingredient)"}
    screening = {"generation_id": facts.generation_id, "policy": facts.policy, **facts.screening}
    manifest: dict[str, Any] = {
        "claim_generator_info": [{"name": "Hallmark", "version": facts.claim_generator_version}],
        "title": facts.title,
        "format": "video/mp4",
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {
                # The watermark is the soft binding: it ties a stripped or re-encoded copy back here.
                "label": "c2pa.soft-binding",
                "data": {
                    "alg": facts.watermark_alg,
                    "blocks": [
                        {
                            "scope": {},
                            "value": soft_binding_value(facts.watermark_payload, facts.watermark_key_id),
                        }
                    ],
                },
            },
            {"label": SCREENING_ASSERTION, "data": screening},
            *training_mining_assertions(facts.training_mining),
            *facts.extra_assertions,
        ],
    }
    if facts.thumbnail_jpeg is not None:
        manifest["thumbnail"] = {"format": "image/jpeg", "identifier": THUMBNAIL_ID}
    return manifest


class ManifestSigner:
    """Signs MP4 files with the deployment's certificate chain.

    The key is a local PEM file (c2pa-rs signs natively), or lives in a KMS or HSM and is reached
    through `sign`, a callback that signs the bytes it is given. The chain is checked here, at
    start-up, not at the first generation.
    """

    name = "c2pa-python"
    version = c2pa.__version__

    def __init__(
        self, material: SigningMaterial, tsa_url: str | None = None, sign: SignCallback | None = None
    ) -> None:
        self._leaf = check_chain(material, sign)
        self._alg = c2pa_algorithm(self._leaf)
        self._material = material
        self._sign = sign
        self._tsa_url = tsa_url
        self._anchors = material.trust_anchors_pem().decode()

    @property
    def certificate_subject(self) -> str:
        return self._leaf.subject.rfc4514_string()

    def _signer(self, tsa_url: str | None) -> c2pa.Signer:
        chain = self._material.chain_pem()
        if self._sign is None:
            info = c2pa.C2paSignerInfo(
                self._alg.encode(), chain, self._material.key_pem(), tsa_url.encode() if tsa_url else None
            )
            return c2pa.Signer.from_info(info)
        alg = c2pa.C2paSigningAlg[self._alg.upper()]
        return c2pa.Signer.from_callback(self._sign, alg, chain.decode(), tsa_url)

    def sign(self, source: Path, dest: Path, facts: ManifestFacts) -> SignedManifest:
        """Write `source` with an embedded signed manifest to `dest`.

        With a timestamp authority configured, the signature is countersigned by it; when it
        cannot be reached, the file is signed without a timestamp and the result says so.
        """
        warning = None
        try:
            store = self._embed(source, dest, facts, self._tsa_url)
        except c2pa.C2paError as exc:
            if not self._tsa_url:
                raise SigningError(f"C2PA signing of {source.name} failed: {exc}") from exc
            warning = f"timestamp authority {self._tsa_url} failed ({exc}); signed without a timestamp"
            try:
                store = self._embed(source, dest, facts, None)
            except c2pa.C2paError as exc2:
                raise SigningError(f"C2PA signing of {source.name} failed: {exc2}") from exc2
        # Read the result back as a verifier would: it must validate and chain to our anchors.
        reading = read_manifest(dest, self._anchors)
        if reading.validation_state != "Trusted" or reading.active is None:
            raise SigningError(
                f"the signed file does not verify as Trusted against the configured trust anchors "
                f"(state {reading.validation_state}, failures {reading.failures or reading.error})"
            )
        timestamped = bool((reading.active.get("signature_info") or {}).get("time"))
        return SignedManifest(reading.active["label"], store, timestamped, warning)

    def _embed(self, source: Path, dest: Path, facts: ManifestFacts, tsa_url: str | None) -> bytes:
        # The builder validates an ingredient's own manifest against our trust anchors as it adds it.
        context = c2pa.Context(c2pa.Settings.from_dict(_reader_settings(self._anchors)))
        with (
            context,
            self._signer(tsa_url) as signer,
            c2pa.Builder(build_manifest(facts), context=context) as builder,
        ):
            if facts.thumbnail_jpeg is not None:
                builder.add_resource(THUMBNAIL_ID, io.BytesIO(facts.thumbnail_jpeg))
            if facts.ingredient is not None:
                ingredient = facts.ingredient
                builder.add_ingredient(
                    {"title": ingredient.title, "relationship": "inputTo"},
                    ingredient.media_type,
                    io.BytesIO(ingredient.data),
                )
            # 1 MiB buffers: c2pa-rs reads and writes through Python in small calls (bench/verify.py).
            with source.open("rb", buffering=1 << 20) as src, dest.open("w+b", buffering=1 << 20) as dst:
                return builder.sign(signer, "video/mp4", src, dst)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_thumbnail(frame: np.ndarray, max_side: int = 320) -> bytes:
    """The claim thumbnail: one frame as a JPEG no larger than `max_side` pixels."""
    from PIL import Image

    image = Image.fromarray(frame)
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@dataclass(frozen=True)
class ManifestReading:
    present: bool
    validation_state: str | None  # "Trusted", "Valid" or "Invalid" as c2pa-rs reports it
    failures: list[str]
    active: dict[str, Any] | None
    error: str | None = None
    results: dict[str, Any] = field(default_factory=dict)  # c2pa-rs validation results, every code
    manifests: dict[str, Any] = field(default_factory=dict)  # every manifest in the store, by label
    signer_spki_sha256: str | None = None  # the pin of the key that signed the active manifest


def read_manifest(
    path: Path, trust_anchors_pem: str | None, manifest_store: bytes | None = None, fetch_remote: bool = False
) -> ManifestReading:
    """Read and validate the manifest in `path`, trusting only `trust_anchors_pem`.

    With `manifest_store` (a store recovered from elsewhere), that store is validated against the
    file instead of whatever the file embeds. `fetch_remote`: fetch a manifest from the URL the
    file names (off unless a person asks for it: `hallmark verify --fetch-remote-manifest`).
    """
    try:
        context = c2pa.Context(c2pa.Settings.from_dict(_reader_settings(trust_anchors_pem, fetch_remote)))
        with (
            context,
            path.open("rb") as stream,
            c2pa.Reader("video/mp4", stream, manifest_data=manifest_store, context=context) as reader,
        ):
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            active = reader.get_active_manifest()
            manifests = json.loads(reader.json()).get("manifests", {})
    except c2pa.C2paError.ManifestNotFound:
        return ManifestReading(False, None, [], None)
    except (c2pa.C2paError, KeyError, ValueError, TypeError, UnicodeError) as exc:
        return _unreadable(exc)
    failures = [
        f["code"] for f in results.get("activeManifest", {}).get("failure", []) if isinstance(f, dict)
    ]
    label = active.get("label") if isinstance(active, dict) else None
    store = manifest_store if manifest_store is not None else embedded_store(path)
    return ManifestReading(
        True,
        state,
        failures,
        active,
        results=results,
        manifests=manifests,
        signer_spki_sha256=signer_pin(store, label if isinstance(label, str) else None),
    )


def _unreadable(exc: Exception) -> ManifestReading:
    """What a reading that failed says about the file."""
    if isinstance(exc, c2pa.C2paError.RemoteManifest) or str(exc).startswith("Remote:"):
        # The file names a URL for its manifest; verifying never fetches one (see _reader_settings).
        fetched = "must fetch" not in str(exc)
        what = (
            "could not be fetched" if fetched else "not fetched: remote manifests are fetched only on request"
        )
        return ManifestReading(False, None, [], None, error=f"a remote manifest, {what} ({exc})")
    if isinstance(exc, c2pa.C2paError.Other | c2pa.C2paError.NotSupported | c2pa.C2paError.Io):
        # The file itself could not be parsed (not an MP4, truncated...): no manifest can be read.
        return ManifestReading(False, None, [], None, error=str(exc))
    # A manifest store that is there but cannot be parsed, or has no active manifest (the SDK
    # raises KeyError): present, and invalid.
    return ManifestReading(True, "Invalid", [type(exc).__name__], None, error=_short(exc))


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _reader_settings(trust_anchors_pem: str | None, fetch_remote: bool = False) -> dict[str, Any]:
    # Never fetch a manifest from a URL the file names unless a person asked (c2pa-rs would, by
    # default): a verifier must not make requests an uploaded file chooses (SSRF). Revocation
    # is not checked online either.
    settings: dict[str, Any] = {
        "verify": {
            "verify_trust": bool(trust_anchors_pem),
            "remote_manifest_fetch": fetch_remote,
            "ocsp_fetch": False,
        }
    }
    if trust_anchors_pem:
        settings["trust"] = {"trust_anchors": trust_anchors_pem}
    return settings
