"""Composition: build the pipeline and the verifier from settings. No business logic here."""

from __future__ import annotations

import datetime as dt
import importlib
import os
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from audit import AuditStore, CheckpointKey
from generator import DiffusersBackend, GuardedPipeline
from hallmark.settings import Settings
from jobs.queues import CeleryQueue, InProcessQueue
from jobs.runner import JobQueue, JobSettings
from moderation import (
    BlocklistClassifier,
    ClipConceptFilter,
    HeadWeights,
    LanguageClassifier,
    MiniLMEncoder,
    NudityClassifier,
    NudityDetector,
    ProfanityClassifier,
    PromptModel,
    SemanticClassifier,
    TransformersTextClassifier,
)
from policy import Policy
from provenance import (
    InvisibleWatermark,
    ManifestSigner,
    SignCallback,
    SigningMaterial,
    TileMark,
    VideoWatermark,
    VisibleWatermark,
    WatermarkKey,
    check_chain,
    ensure_dev_chain,
    ensure_dev_watermark_keys,
    load_watermark_keys,
    retired_dev_signers,
)
from provenance.identity import spki_sha256


def configure_torch(settings: Settings) -> None:
    import torch

    threads = settings.torch_threads or min(os.cpu_count() or 1, 8)
    torch.set_num_threads(threads)


def signing_material(settings: Settings) -> SigningMaterial:
    """The signing chain, its key (None when a callback holds it) and the trust anchors."""
    if settings.signing_callback and not settings.signing_chain:
        raise ValueError(
            "HALLMARK_SIGNING_CALLBACK needs HALLMARK_SIGNING_CHAIN, the certificate chain of its key"
        )
    if settings.signing_chain or settings.signing_key:
        if not settings.signing_chain or not (settings.signing_key or settings.signing_callback):
            raise ValueError(
                "set HALLMARK_SIGNING_CHAIN with HALLMARK_SIGNING_KEY (a key file) or with "
                "HALLMARK_SIGNING_CALLBACK (a KMS or HSM), or none of them"
            )
        if settings.signing_key and settings.signing_callback:
            raise ValueError("set HALLMARK_SIGNING_KEY or HALLMARK_SIGNING_CALLBACK, not both")
        if not settings.trust_anchors:
            # Trusting the configured chain itself would make every file it signs "trusted".
            raise ValueError(
                "a configured signing chain needs HALLMARK_TRUST_ANCHORS (the root(s) it chains to)"
            )
        return SigningMaterial(settings.signing_chain, settings.signing_key, settings.trust_anchors)
    material = ensure_dev_chain(settings.certs_dir)
    if settings.trust_anchors:
        return SigningMaterial(material.chain_path, material.key_path, settings.trust_anchors)
    return material


def sign_callback(settings: Settings) -> SignCallback | None:
    """HALLMARK_SIGNING_CALLBACK=package.module:function, a function that signs bytes with a KMS or
    HSM key."""
    if not settings.signing_callback:
        return None
    module_name, _, attribute = settings.signing_callback.partition(":")
    if not module_name or not attribute:
        raise ValueError(
            f"HALLMARK_SIGNING_CALLBACK={settings.signing_callback}: expected package.module:function"
        )
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"HALLMARK_SIGNING_CALLBACK={settings.signing_callback}: {exc}") from exc
    if not callable(function):
        raise ValueError(f"HALLMARK_SIGNING_CALLBACK={settings.signing_callback}: not callable")
    return function


def build_signer(settings: Settings) -> ManifestSigner:
    """The C2PA signer; its certificate chain is checked here, so a bad one fails at start-up."""
    return ManifestSigner(signing_material(settings), tsa_url=settings.tsa_url, sign=sign_callback(settings))


def retired_signers(settings: Settings) -> list[x509.Certificate]:
    """Signing certificates used before a rotation: configured, or the development chain's retired ones."""
    if settings.retired_signing_certs is not None:
        return x509.load_pem_x509_certificates(settings.retired_signing_certs.read_bytes())
    if settings.signing_chain is None:
        return retired_dev_signers(settings.certs_dir)
    return []


def signing_identities(settings: Settings) -> list[str]:
    """The pins (SHA-256 of the key's SubjectPublicKeyInfo) of this deployment's signing keys:
    the signing chain's leaf, the retired signing certificates and HALLMARK_PINNED_SIGNERS. Only
    a manifest signed with one of them is "made by this generator"; anyone else's trusted
    certificate is reported as someone else's."""
    leaf = x509.load_pem_x509_certificates(signing_material(settings).chain_path.read_bytes())[0]
    certificates = [leaf, *retired_signers(settings)]
    if settings.pinned_signers is not None:
        certificates += x509.load_pem_x509_certificates(settings.pinned_signers.read_bytes())
    # A bundle may hold whole chains: only signing (end-entity) certificates are pinned.
    return sorted({spki_sha256(c) for c in certificates if not _is_ca(c)})


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def trust_anchors_pem(settings: Settings) -> str:
    if settings.trust_anchors:
        return settings.trust_anchors.read_text()
    return signing_material(settings).trust_anchors_pem().decode()


def open_store(settings: Settings) -> AuditStore:
    """The audit store; its chain-head checkpoints are signed with the deployment's signing key."""
    material = signing_material(settings)
    callback = sign_callback(settings)
    if callback is None:
        key = CheckpointKey.from_files(material.chain_path, material.key_path)
    else:  # the callback must sign for this chain's key, or checkpoints would never verify
        key = CheckpointKey(check_chain(material, callback), sign_callback=callback)
    return AuditStore(
        settings.resolved_database_url,
        checkpoint_key=key,
        checkpoint_every=settings.audit_checkpoint_every,
        retired_checkpoint_keys=[CheckpointKey(c) for c in retired_signers(settings)],
    )


def watermark_keys(settings: Settings) -> list[WatermarkKey]:
    """The configured key file (which must exist), or the development one, created on first use."""
    if settings.watermark_keys is not None:
        if not settings.watermark_keys.is_file():
            raise ValueError(f"HALLMARK_WATERMARK_KEYS={settings.watermark_keys}: no such file")
        return load_watermark_keys(settings.watermark_keys)
    return ensure_dev_watermark_keys(settings.watermark_keys_path)


def build_watermark(settings: Settings) -> VideoWatermark:
    """TileMark with the deployment's keys, or a baseline method."""
    if settings.watermark_method != "tilemark":
        return InvisibleWatermark(settings.watermark_method)
    return TileMark(watermark_keys(settings))


def build_prompt_classifiers(settings: Settings, policy: Policy) -> list:
    """The policy's prompt stage: the blocklist, the trained classifier (with its language rule),
    and any stand-alone signals the policy configures."""
    prompt = policy.prompt
    classifiers: list = [BlocklistClassifier(prompt.blocklist)]
    encoder = MiniLMEncoder(device=settings.device) if prompt.model.enabled or prompt.semantic else None
    if prompt.model.enabled:
        weights = HeadWeights.load(Path(prompt.model.weights) if prompt.model.weights else None)
        classifiers.append(
            PromptModel(
                encoder,
                weights,
                prompt.categories,
                evasion_action=prompt.model.evasion,
                second_category_share=prompt.model.second_category_share,
            )
        )
        classifiers.append(LanguageClassifier(prompt.model))
    if prompt.profanity is not None and prompt.profanity.enabled:
        classifiers.append(ProfanityClassifier(prompt.profanity))
    if prompt.semantic:
        classifiers.append(SemanticClassifier(encoder, prompt.semantic))
    if prompt.external is not None:
        classifiers.append(TransformersTextClassifier(prompt.external, device=settings.device))
    return classifiers


def build_pipeline(settings: Settings, policy: Policy | None = None) -> GuardedPipeline:
    """Every stage of the guarded pipeline, as the settings and the policy configure it."""
    configure_torch(settings)
    policy = policy or Policy.load(settings.policy)
    nudity = NudityDetector()
    prompt_classifiers = build_prompt_classifiers(settings, policy)
    frame_classifiers = [
        ClipConceptFilter(
            policy.frames.clip_concepts,
            model_name=settings.clip_model,
            pretrained=settings.clip_pretrained or None,
            uncalibrated_max_action=policy.frames.uncalibrated_max_action,
            device=settings.device,
            aggregation=policy.frames.aggregation,
        )
    ]
    if policy.frames.nudity.enabled:
        frame_classifiers.append(
            NudityClassifier(
                nudity, policy.frames.nudity, stage="frames", aggregation=policy.frames.aggregation
            )
        )
    image_classifiers = []
    if policy.image.nudity.enabled:
        image_classifiers.append(NudityClassifier(nudity, policy.image.nudity, stage="image"))
    return GuardedPipeline(
        policy=policy,
        prompt_classifiers=prompt_classifiers,
        image_classifiers=image_classifiers,
        backend=DiffusersBackend.from_pretrained(
            settings.model, device=settings.device, dtype=settings.dtype, revision=settings.model_revision
        ),
        frame_classifiers=frame_classifiers,
        visible_watermark=VisibleWatermark(policy.provenance.visible_watermark),
        invisible_watermark=build_watermark(settings),
        signer=build_signer(settings),
        audit=open_store(settings),
        crf=settings.video_crf,
    )


def job_settings(settings: Settings) -> JobSettings:
    return JobSettings(
        artifacts=settings.artifacts_path,
        lease=dt.timedelta(seconds=settings.job_lease_s),
        max_attempts=settings.job_max_attempts,
        fps=settings.job_fps,
        steps=settings.job_steps,
    )


def build_job_queue(settings: Settings, run: Callable[[str], object]) -> JobQueue:
    """In-process worker threads (the embedded default) or Celery workers on Redis."""
    if settings.jobs == "celery":
        return CeleryQueue(settings.broker_url, settings.job_visibility_timeout_s)
    return InProcessQueue(run)
