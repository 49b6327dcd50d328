"""C2PA manifests: build the manifest for a generation, sign an MP4 with c2pa-python, read it back."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import c2pa
import numpy as np

from provenance.certs import SigningMaterial, check_chain

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SCREENING_ASSERTION = "org.hallmark.screening"


class SigningError(RuntimeError):
    """The manifest could not be built, signed or read back."""


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
    ingredient_png: bytes | None = None
    extra_assertions: list[dict[str, Any]] = field(default_factory=list)


def soft_binding_value(facts: ManifestFacts) -> str:
    """Base64 of what the watermark carries: the key id byte (keyed methods) and the payload."""
    key = bytes([facts.watermark_key_id]) if facts.watermark_key_id is not None else b""
    return base64.b64encode(key + bytes.fromhex(facts.watermark_payload)).decode()


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
    if facts.ingredient_png is not None:
        actions[0]["parameters"] = {"description": "generated from an input image (ingredient)"}
    screening = {"generation_id": facts.generation_id, "policy": facts.policy, **facts.screening}
    return {
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
                    "blocks": [{"scope": {}, "value": soft_binding_value(facts)}],
                },
            },
            {"label": SCREENING_ASSERTION, "data": screening},
            {
                "label": "cawg.training-mining",
                "data": {
                    "entries": {
                        use: {"use": facts.training_mining}
                        for use in (
                            "cawg.ai_generative_training",
                            "cawg.ai_training",
                            "cawg.ai_inference",
                            "cawg.data_mining",
                        )
                    }
                },
            },  # fmt: skip
            *facts.extra_assertions,
        ],
    }


class ManifestSigner:
    """Signs MP4 files with a local key and certificate chain (ES256)."""

    name = "c2pa-python"
    version = c2pa.__version__

    def __init__(self, material: SigningMaterial, tsa_url: str | None = None) -> None:
        self._leaf = check_chain(material)  # fail at start-up, not at the first generation
        self._material = material
        self._tsa_url = tsa_url

    @property
    def certificate_subject(self) -> str:
        return self._leaf.subject.rfc4514_string()

    def sign(self, source: Path, dest: Path, facts: ManifestFacts) -> str:
        """Write `source` with an embedded signed manifest to `dest`; return the manifest label."""
        manifest = build_manifest(facts)
        try:
            info = c2pa.C2paSignerInfo(
                b"es256",
                self._material.chain_pem(),
                self._material.key_pem(),
                self._tsa_url.encode() if self._tsa_url else None,
            )
            with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
                if facts.ingredient_png is not None:
                    builder.add_ingredient(
                        {"title": "input.png", "relationship": "inputTo"},
                        "image/png",
                        io.BytesIO(facts.ingredient_png),
                    )
                with source.open("rb") as src, dest.open("w+b") as dst:
                    builder.sign(signer, "video/mp4", src, dst)
        except c2pa.C2paError as exc:
            raise SigningError(f"C2PA signing of {source.name} failed: {exc}") from exc
        # Read the result back as a verifier would: it must validate and chain to our anchors.
        reading = read_manifest(dest, self._material.trust_anchors_pem().decode())
        if reading.validation_state != "Trusted" or reading.active is None:
            raise SigningError(
                f"the signed file does not verify as Trusted against the configured trust anchors "
                f"(state {reading.validation_state}, failures {reading.failures or reading.error})"
            )
        return reading.active["label"]


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class ManifestReading:
    present: bool
    validation_state: str | None  # "Trusted", "Valid" or "Invalid" as c2pa-rs reports it
    failures: list[str]
    active: dict[str, Any] | None
    error: str | None = None


def read_manifest(path: Path, trust_anchors_pem: str | None) -> ManifestReading:
    """Read and validate the manifest in `path`, trusting only `trust_anchors_pem`."""
    settings: dict[str, Any] = {"verify": {"verify_trust": bool(trust_anchors_pem)}}
    if trust_anchors_pem:
        settings["trust"] = {"trust_anchors": trust_anchors_pem}
    try:
        context = c2pa.Context(c2pa.Settings.from_dict(settings))
        with context, c2pa.Reader(str(path), context=context) as reader:
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            active = reader.get_active_manifest()
    except c2pa.C2paError.ManifestNotFound:
        return ManifestReading(False, None, [], None)
    except (c2pa.C2paError.Other, c2pa.C2paError.NotSupported, c2pa.C2paError.Io) as exc:
        # The file itself could not be parsed (not an MP4, truncated...): no manifest can be read.
        return ManifestReading(False, None, [], None, error=str(exc))
    except c2pa.C2paError as exc:
        # A manifest that cannot even be parsed is present but invalid.
        return ManifestReading(True, "Invalid", [type(exc).__name__], None, error=str(exc))
    failures = [f["code"] for f in results.get("activeManifest", {}).get("failure", [])]
    return ManifestReading(True, state, failures, active)
