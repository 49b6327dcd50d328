"""Provenance that cannot be forged (issue 20, item 1): a certificate authority that the verifier
trusts, but that is not this deployment's signing identity, signs look-alike manifests. "Made by
this generator" needs a claim signed with one of this deployment's own keys (pinned by the SHA-256
of its SubjectPublicKeyInfo) and the watermark the manifest names in the pictures."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from conftest import look_alike_facts
from cryptography import x509

from hallmark.compose import signing_identities
from hallmark.settings import Settings
from provenance import ManifestSigner, encode_mp4, ensure_dev_chain, verify
from provenance.identity import embedded_store, signer_certificate, spki_sha256
from provenance.manifest import read_manifest
from provenance.video import decode_frames


@pytest.fixture(scope="module")
def mallory(tmp_path_factory):
    """Another organisation's CA and signer: trusted by the verifier, but not this deployment."""
    return ensure_dev_chain(tmp_path_factory.mktemp("mallory"), organisation="Mallory Media")


@pytest.fixture(scope="module")
def both_trusted(tmp_path_factory, trust_anchors, mallory):
    """The trust anchors of a verifier that trusts both CAs (as one trusting a public trust list)."""
    path = tmp_path_factory.mktemp("anchors") / "anchors.pem"
    path.write_text(trust_anchors + mallory.trust_anchors_pem().decode())
    return path


@pytest.mark.slow
def test_the_signer_certificate_is_read_from_the_signature(released, settings, signers):
    store = embedded_store(released.output)
    certificate = signer_certificate(store, released.manifest_label)
    assert certificate is not None and spki_sha256(certificate) in signers
    assert read_manifest(released.output, None).signer_spki_sha256 == spki_sha256(certificate)
    assert signer_certificate(store, "urn:c2pa:not-there") is None


def test_current_retired_and_configured_signers_are_pinned(tmp_path, mallory):
    settings = Settings(data_dir=tmp_path / "data")
    current = signing_identities(settings)
    assert len(current) == 1
    extra = tmp_path / "pinned.pem"
    extra.write_bytes(mallory.chain_pem())
    both = signing_identities(settings.model_copy(update={"pinned_signers": extra}))
    leaf = x509.load_pem_x509_certificates(mallory.chain_pem())[0]
    assert set(both) == set(current) | {spki_sha256(leaf)}


@pytest.mark.slow
def test_a_trusted_look_alike_on_unrelated_video_is_not_made_by_this_generator(
    released, pipeline, clip_with_frames, both_trusted, mallory, signers, tmp_path, settings
):
    forged = tmp_path / "forged.mp4"
    ManifestSigner(mallory).sign(clip_with_frames, forged, look_alike_facts(released, pipeline))
    report = verify(
        forged, both_trusted.read_text(), pipeline.invisible_watermark, pipeline.audit, signers=signers
    )
    m = report.manifest
    assert m.trusted and m.valid and m.claim_generator.startswith("Hallmark") and m.soft_binding
    assert not m.own_signer and m.signer_spki_sha256 not in signers
    assert report.conclusion.made_by_generator is False
    assert "not signed with this generator's signing key" in report.conclusion.summary
    assert "Authentic" not in report.conclusion.summary

    # The CLI, trusting both CAs as the README's production setup trusts a public list: not exit 0.
    env = {
        **os.environ,
        "HALLMARK_DATA_DIR": str(settings.data_dir),
        "HALLMARK_TRUST_ANCHORS": str(both_trusted),
        "HALLMARK_TORCH_THREADS": "2",
    }
    run = subprocess.run(
        [sys.executable, "-m", "hallmark.cli", "verify", str(forged)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 4, run.stdout + run.stderr
    assert "Authentic" not in run.stdout and "Mallory Media" in run.stdout


@pytest.mark.slow
def test_an_edited_hallmark_video_re_signed_by_a_trusted_third_party_is_altered(
    released, pipeline, both_trusted, mallory, signers, tmp_path
):
    """A red box drawn on a released video, re-signed by another trusted CA with Hallmark's claims
    and soft binding copied: the watermark still leads to the original, and the report says the
    embedded manifest is not the one it was released with."""
    frames = decode_frames(released.output).copy()
    frames[:, 4:28, 4:28] = (220, 20, 20)
    edited = tmp_path / "edited.mp4"
    encode_mp4(frames, edited, fps=8)
    resigned = tmp_path / "resigned.mp4"
    ManifestSigner(mallory).sign(edited, resigned, look_alike_facts(released, pipeline))
    report = verify(
        resigned, both_trusted.read_text(), pipeline.invisible_watermark, pipeline.audit, signers=signers
    )
    assert report.watermark.detected and report.watermark.payload == released.watermark_payload
    assert report.manifest.trusted and not report.manifest.own_signer
    assert report.recovery.manifest is not None and report.recovery.manifest.own_signer
    assert report.recovery.manifest.label == released.manifest_label
    c = report.conclusion
    assert c.made_by_generator is True and c.altered is True
    assert "not the one it was released with" in c.summary and "Mallory Media" in c.summary


@pytest.mark.slow
def test_without_pins_nothing_is_made_by_this_generator(released, pipeline, trust_anchors):
    """Fail closed: a verifier that was given no signing identity confirms no one."""
    report = verify(released.output, trust_anchors, pipeline.invisible_watermark, pipeline.audit)
    assert report.manifest.trusted and report.conclusion.made_by_generator is not True


@pytest.fixture(scope="module")
def clip_with_frames(tmp_path_factory):
    """Unrelated, unwatermarked video."""
    from conftest import natural_frames

    path = tmp_path_factory.mktemp("unrelated") / "unrelated.mp4"
    encode_mp4(natural_frames(16, (128, 128)), path)
    return path


@pytest.mark.slow
def test_malformed_stores_never_raise(released):
    """Random byte flips, truncations and box-size corruptions of a real manifest store: the
    signer is read or not, never an exception."""
    store = bytearray(embedded_store(released.output))
    rng = random.Random(20)
    outcomes = {"read": 0, "none": 0}
    for _ in range(400):
        data = bytearray(store)
        how = rng.choice(["flip", "truncate", "size", "duplicate"])
        if how == "flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif how == "truncate":
            data = data[: rng.randrange(len(data))]
        elif how == "size":
            at = rng.randrange(0, len(data) - 4)
            data[at : at + 4] = rng.choice([b"\x00\x00\x00\x01", b"\xff\xff\xff\xff", b"\x00\x00\x00\x08"])
        else:
            start = rng.randrange(len(data))
            data = data[:start] + data[start : start + rng.randint(8, 512)] + data[start:]
        certificate = signer_certificate(bytes(data), released.manifest_label)
        outcomes["read" if certificate is not None else "none"] += 1
    assert outcomes["read"] > 0 and outcomes["none"] > 0, outcomes
