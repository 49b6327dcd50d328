"""C2PA provenance for third parties, with real files, real c2pa-rs signing and reading:
trusted, untrusted, expired, tampered, stripped by remuxing, re-encoded at CRF 28, an ingredient
with its own manifest, a callback (KMS/HSM) signer, certificate rotation, the Soft Binding
Resolution API (in process and over HTTP) and bad uploads."""

from __future__ import annotations

import datetime as dt
import io
import json

import av
import c2pa
import numpy as np
import pytest
from conftest import capture_manifest, natural_frames, sign_as_other_tool
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi.testclient import TestClient

from generator import GenerationRequest
from hallmark.app import create_app
from provenance import (
    CertificateError,
    Ingredient,
    ManifestFacts,
    ManifestSigner,
    SigningMaterial,
    VideoError,
    encode_mp4,
    ensure_dev_chain,
    read_manifest,
    verify,
)
from provenance.certs import DEV_ROOT_KEY, issue_signer, local_sign_callback
from provenance.resolve import HttpResolver, StoreResolver
from provenance.video import decode_frames

# ---- helpers: what happens to a video after release -------------------------------------


def remux(src, dest):
    """Copy the H.264 packets into a new MP4: what a platform's ingest does; the manifest is lost."""
    with av.open(str(src)) as inp, av.open(str(dest), "w", format="mp4") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dest


def reencode(src, dest, crf):
    encode_mp4(decode_frames(src), dest, fps=8, crf=crf)
    return dest


def facts(**changes) -> ManifestFacts:
    base = dict(
        generation_id="test",
        title="clip.mp4",
        model_name="tiny",
        model_version="1",
        policy="default@1",
        screening={"classifiers": {}, "uncalibrated": []},
        watermark_method="none",
        watermark_payload="a1b2c3d4e5f6",
        watermark_alg="org.hallmark.tilemark.v1",
        claim_generator_version="0.1.0",
        watermark_key_id=1,
    )
    return ManifestFacts(**{**base, **changes})


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    encode_mp4(natural_frames(8, (64, 64)), path)
    return path


def _root(material: SigningMaterial):
    root = x509.load_pem_x509_certificate(material.trust_anchors_pem())
    key = serialization.load_pem_private_key((material.chain_path.parent / DEV_ROOT_KEY).read_bytes(), None)
    return root, key


def _write_chain(directory, leaf, leaf_key, root) -> SigningMaterial:
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / "chain.pem").write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    (directory / "key.pem").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "root.pem").write_bytes(root.public_bytes(pem))
    return SigningMaterial(directory / "chain.pem", directory / "key.pem", directory / "root.pem")


# ---- the released file, as generated ------------------------------------------------------


@pytest.mark.slow
def test_trusted_file_gets_one_clear_answer_and_the_whole_manifest(
    released, pipeline, trust_anchors, signers
):
    report = verify(
        released.output, trust_anchors, pipeline.invisible_watermark, pipeline.audit, signers=signers
    )
    c, m = report.conclusion, report.manifest
    assert c.made_by_generator is True and c.altered is False and c.policy == pipeline.policy.label
    assert c.summary.startswith("Authentic")
    assert m.trusted and m.valid and m.hash_binding == "intact" and m.failures == []
    assert m.label == released.manifest_label and m.claim_generator.startswith("Hallmark")
    assert m.policy == pipeline.policy.label and m.thumbnail
    assert m.timestamp is None, "no timestamp authority is configured in tests"
    assert any("signed without a timestamp authority" in line for line in report.summary())
    assert m.training_mining["c2pa.ai_training"]["use"] == pipeline.policy.provenance.training_mining
    screening = m.screening["classifiers"]
    assert {"blocklist", "clip-concepts"} <= set(screening) or len(screening) >= 2
    for classifier in screening.values():
        assert classifier["version"] and all("score" in best for best in classifier["highest"].values())
    assert m.soft_binding == report.watermark.soft_binding, "the manifest names the watermark it carries"
    assert report.recovery.attempted is False


@pytest.mark.slow
def test_untrusted_signer_is_reported_with_its_code(released, pipeline, tmp_path, signers):
    other_root = ensure_dev_chain(tmp_path / "other").trust_anchors_pem().decode()
    report = verify(released.output, other_root, pipeline.invisible_watermark, signers=signers)
    assert report.manifest.valid and not report.manifest.trusted
    assert "signingCredential.untrusted" in report.manifest.failures
    assert report.conclusion.made_by_generator is None and "NOT trusted" in report.conclusion.summary


@pytest.mark.slow
def test_tampered_bytes_break_the_hash_binding_and_the_watermark_recovers_the_original(
    released, pipeline, trust_anchors, tmp_path, signers
):
    data = bytearray(released.output.read_bytes())
    data[data.find(b"mdat") + 200] ^= 0xFF  # one byte of the H.264 stream
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    report = verify(tampered, trust_anchors, pipeline.invisible_watermark, pipeline.audit, signers=signers)
    assert report.manifest.hash_binding == "broken" and report.manifest.validation_state == "Invalid"
    assert "assertion.bmffHash.mismatch" in report.manifest.failures
    assert report.conclusion.altered is True
    assert report.recovery.manifest is not None and report.recovery.manifest_id == released.manifest_label


@pytest.mark.parametrize("transform", ["remux", "crf28"])
@pytest.mark.slow
def test_stripped_or_reencoded_copy_recovers_the_original_manifest_from_the_store(
    released, pipeline, trust_anchors, tmp_path, transform, signers
):
    copy = tmp_path / "copy.mp4"
    remux(released.output, copy) if transform == "remux" else reencode(released.output, copy, crf=28)
    assert read_manifest(copy, trust_anchors).present is False, "the copy carries no manifest"
    report = verify(copy, trust_anchors, pipeline.invisible_watermark, pipeline.audit, signers=signers)
    assert not report.manifest.present and report.watermark.detected
    assert report.watermark.false_positive_probability < 1e-6
    r = report.recovery
    assert r.attempted and r.source == "local audit store" and r.manifest_id == released.manifest_label
    original = r.manifest
    assert original.valid and original.trusted and original.hash_binding == "broken"
    assert original.policy == pipeline.policy.label and original.model.startswith(pipeline.backend.name)
    c = report.conclusion
    assert c.made_by_generator is True and c.altered is True and c.policy == pipeline.policy.label
    assert "re-encoded" in c.summary and released.manifest_label in c.summary
    assert report.record.generation_id == released.generation_id and not report.record.matches_file


def test_copy_of_an_unknown_video_is_not_claimed(pipeline, trust_anchors, clip, signers):
    report = verify(clip, trust_anchors, pipeline.invisible_watermark, pipeline.audit, signers=signers)
    assert not report.manifest.present and not report.watermark.detected
    assert report.conclusion.made_by_generator is None and report.conclusion.altered is None
    assert report.recovery.attempted is False and report.record is None


# ---- ingredients ------------------------------------------------------------------------


@pytest.mark.slow
def test_input_image_with_its_own_manifest_is_carried_as_an_ingredient(
    pipeline, trust_anchors, tmp_path, signers
):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(natural_frames(1)[0]).save(buffer, format="JPEG")
    camera = ensure_dev_chain(tmp_path / "camera", organisation="Example camera")
    photo_manifest = capture_manifest("Example camera", "2.0", "photo.jpg", "image/jpeg")
    signed_photo = io.BytesIO()
    info = c2pa.C2paSignerInfo(b"es256", camera.chain_pem(), camera.key_pem(), None)
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(photo_manifest) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO(buffer.getvalue()), signed_photo)
    photo = signed_photo.getvalue()
    with c2pa.Reader("image/jpeg", io.BytesIO(photo)) as reader:
        photo_label = reader.get_active_manifest()["label"]
    with Image.open(io.BytesIO(photo)) as img:
        pixels = np.asarray(img.convert("RGB"))
    out = tmp_path / "from-photo.mp4"
    result = pipeline(
        GenerationRequest(
            prompt="steam rising from a cup",
            output=out,
            image=pixels,
            image_file=Ingredient(photo, "image/jpeg", "photo.jpg"),
        )
    )
    assert result.status == "released", result.reason
    report = verify(out, trust_anchors, pipeline.invisible_watermark, pipeline.audit, signers=signers)
    assert report.conclusion.made_by_generator is True
    [ingredient] = report.manifest.ingredients
    assert ingredient.title == "photo.jpg" and ingredient.relationship == "inputTo"
    assert ingredient.format == "image/jpeg"
    assert ingredient.manifest and ingredient.manifest != report.manifest.label, "the photo's own manifest"
    assert ingredient.claim_generator.startswith("Example camera")
    assert ingredient.signer == "Example camera C2PA signer"
    # The camera's root is not among our trust anchors: that is recorded, not hidden.
    assert "signingCredential.untrusted" in ingredient.failures
    assert ingredient.manifest == photo_label, "the ingredient names the photo's own manifest"
    assert any(
        "ingredient photo.jpg" in line and "with its own manifest" in line for line in report.summary()
    )


# ---- signers and certificates -------------------------------------------------------------


def test_callback_signer_keeps_the_key_out_of_c2pa(clip, tmp_path):
    dev = ensure_dev_chain(tmp_path / "certs")
    hsm = local_sign_callback(dev.key_pem())  # stands in for a KMS or HSM: c2pa never sees the key
    calls = []

    def kms_sign(data: bytes) -> bytes:
        calls.append(len(data))
        return hsm(data)

    no_key = SigningMaterial(dev.chain_path, None, dev.trust_anchors_path)
    signer = ManifestSigner(no_key, sign=kms_sign)
    signed = signer.sign(clip, tmp_path / "signed.mp4", facts())
    reading = read_manifest(tmp_path / "signed.mp4", dev.trust_anchors_pem().decode())
    assert reading.validation_state == "Trusted" and reading.active["label"] == signed.label
    assert len(calls) >= 2, "the start-up probe and the claim signature both went through the callback"
    assert signed.store and not signed.timestamped

    other = local_sign_callback(ensure_dev_chain(tmp_path / "other").key_pem())
    with pytest.raises(CertificateError, match="does not match the signing certificate"):
        ManifestSigner(no_key, sign=other)

    def broken(data: bytes) -> bytes:
        raise ConnectionError("KMS unreachable")

    with pytest.raises(CertificateError, match="KMS unreachable"):
        ManifestSigner(no_key, sign=broken)


def test_signing_callback_from_settings(clip, tmp_path, monkeypatch):
    from hallmark.compose import build_signer, open_store
    from hallmark.settings import Settings

    dev = ensure_dev_chain(tmp_path / "hsm")
    module = tmp_path / "mods" / "fake_kms.py"
    module.parent.mkdir()
    module.write_text(
        "from pathlib import Path\nfrom provenance.certs import local_sign_callback\n"
        f"sign = local_sign_callback(Path({str(dev.key_path)!r}).read_bytes())\n"
    )
    monkeypatch.syspath_prepend(str(module.parent))
    settings = Settings(
        data_dir=tmp_path / "data",
        signing_chain=dev.chain_path,
        trust_anchors=dev.trust_anchors_path,
        signing_callback="fake_kms:sign",
    )
    signed = build_signer(settings).sign(clip, tmp_path / "s.mp4", facts())
    assert read_manifest(tmp_path / "s.mp4", dev.trust_anchors_pem().decode()).active["label"] == signed.label
    store = open_store(settings)  # audit checkpoints are signed through the callback too
    store.checkpoint()
    assert store.verify_chain().ok and not store.verify_chain().warnings
    with pytest.raises(ValueError, match="package.module:function"):
        build_signer(settings.model_copy(update={"signing_callback": "nocolon"}))
    with pytest.raises(ValueError, match="not both"):
        build_signer(settings.model_copy(update={"signing_key": dev.key_path}))


def test_chain_is_checked_at_start_up_with_a_clear_error(tmp_path):
    dev = ensure_dev_chain(tmp_path / "dev")
    root, root_key = _root(dev)
    now = dt.datetime.now(dt.UTC)

    leaf, key = issue_signer(root, root_key, now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    with pytest.raises(CertificateError, match="signing certificate expired on"):
        ManifestSigner(_write_chain(tmp_path / "expired", leaf, key, root))

    leaf, key = issue_signer(root, root_key, now + dt.timedelta(days=1), now + dt.timedelta(days=30))
    with pytest.raises(CertificateError, match="not valid before"):
        ManifestSigner(_write_chain(tmp_path / "future", leaf, key, root))

    leaf, key = issue_signer(
        root, root_key, now, now + dt.timedelta(days=30), eku=ExtendedKeyUsageOID.SERVER_AUTH
    )
    with pytest.raises(CertificateError, match="ExtendedKeyUsage .*serverAuth.* does not allow C2PA"):
        ManifestSigner(_write_chain(tmp_path / "eku", leaf, key, root))

    leaf, key = issue_signer(root, root_key, now, now + dt.timedelta(days=30))
    _, other_key = issue_signer(root, root_key, now, now + dt.timedelta(days=30))
    with pytest.raises(CertificateError, match="private key does not match"):
        ManifestSigner(_write_chain(tmp_path / "mismatch", leaf, other_key, root))

    stranger = ensure_dev_chain(tmp_path / "stranger", organisation="Someone else")
    with pytest.raises(CertificateError, match="does not lead to any trust anchor"):
        ManifestSigner(SigningMaterial(dev.chain_path, dev.key_path, stranger.trust_anchors_path))

    with pytest.raises(CertificateError, match="out of order or broken"):
        pem = serialization.Encoding.PEM
        (tmp_path / "bad.pem").write_bytes(root.public_bytes(pem) + leaf.public_bytes(pem))
        ManifestSigner(SigningMaterial(tmp_path / "bad.pem", dev.key_path, dev.trust_anchors_path))


def test_file_whose_certificate_expired_without_a_timestamp_no_longer_validates(
    clip, tmp_path, pipeline, signers
):
    """Signed while the certificate was valid, checked after it expired: without a timestamp
    authority nothing vouches for when it was signed, so c2pa-rs reports the certificate expired."""
    import time

    dev = ensure_dev_chain(tmp_path / "dev")
    root, root_key = _root(dev)
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=3)
    leaf, key = issue_signer(root, root_key, now - dt.timedelta(minutes=1), expires)
    signer = ManifestSigner(_write_chain(tmp_path / "short", leaf, key, root))
    signer.sign(clip, tmp_path / "short.mp4", facts())
    anchors = dev.trust_anchors_pem().decode()
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1.5)
    report = verify(tmp_path / "short.mp4", anchors, pipeline.invisible_watermark, signers=signers)
    m = report.manifest
    assert m.present and not m.valid and not m.trusted and m.hash_binding == "intact"
    assert "signingCredential.expired" in m.failures
    assert report.conclusion.made_by_generator is None and report.conclusion.altered is None
    assert "signingCredential.expired" in report.conclusion.summary


def test_unreachable_timestamp_authority_signs_without_one_and_says_so(clip, tmp_path):
    dev = ensure_dev_chain(tmp_path / "certs")
    signer = ManifestSigner(dev, tsa_url="http://127.0.0.1:9/tsa")  # nothing listens on port 9
    signed = signer.sign(clip, tmp_path / "s.mp4", facts())
    assert not signed.timestamped and "signed without a timestamp" in signed.warning
    assert read_manifest(tmp_path / "s.mp4", dev.trust_anchors_pem().decode()).validation_state == "Trusted"


def test_rotated_signing_certificates_all_verify(clip, tmp_path):
    from hallmark.compose import build_signer, open_store, retired_signers
    from hallmark.settings import Settings
    from provenance import rotate_dev_signer

    settings = Settings(data_dir=tmp_path)
    anchors = ensure_dev_chain(settings.certs_dir).trust_anchors_pem().decode()
    before = build_signer(settings).sign(clip, tmp_path / "before.mp4", facts())
    old_store = open_store(settings)
    old_store.checkpoint()
    new_leaf = rotate_dev_signer(settings.certs_dir)
    after = build_signer(settings).sign(clip, tmp_path / "after.mp4", facts())
    signers = {
        read_manifest(tmp_path / f"{n}.mp4", anchors).active["signature_info"]["cert_serial_number"]
        for n in ("before", "after")
    }
    assert len(signers) == 2 and str(new_leaf.serial_number) in signers
    for name, signed in (("before", before), ("after", after)):
        reading = read_manifest(tmp_path / f"{name}.mp4", anchors)
        assert reading.validation_state == "Trusted" and reading.active["label"] == signed.label
    assert len(retired_signers(settings)) == 1
    store = open_store(settings)
    store.checkpoint()
    report = store.verify_chain()
    assert report.ok and report.checkpoints_checked == 2 and not report.warnings


# ---- soft binding resolution API ----------------------------------------------------------


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.slow
def test_soft_binding_resolution_api(client, released, pipeline, trust_anchors, tmp_path, signers):
    wm = pipeline.invisible_watermark
    value = verify(released.output, trust_anchors, wm, signers=signers).watermark.soft_binding["value"]
    algs = client.get("/v1/services/supportedAlgorithms").json()
    assert algs == {"watermarks": [{"alg": wm.soft_binding_alg}], "fingerprints": []}

    found = client.get("/v1/matches/byBinding", params={"alg": wm.soft_binding_alg, "value": value})
    assert found.status_code == 200
    assert found.json() == {"matches": [{"manifestId": released.manifest_label, "similarityScore": 100}]}
    posted = client.post("/v1/matches/byBinding", json={"alg": wm.soft_binding_alg, "value": value})
    assert posted.json() == found.json()

    store = client.get(f"/v1/manifests/{released.manifest_label}")
    assert store.status_code == 200 and store.headers["content-type"] == "application/c2pa"
    # Any C2PA reader can validate the recovered store against the original file.
    with c2pa.Context(
        c2pa.Settings.from_dict({"verify": {"verify_trust": True}, "trust": {"trust_anchors": trust_anchors}})
    ) as ctx:
        with (
            released.output.open("rb") as f,
            c2pa.Reader("video/mp4", f, manifest_data=store.content, context=ctx) as reader,
        ):
            assert reader.get_validation_state() == "Trusted"
            assert reader.get_active_manifest()["label"] == released.manifest_label

    stripped = remux(released.output, tmp_path / "stripped.mp4")
    by_content = client.post(
        "/v1/matches/byContent", content=stripped.read_bytes(), headers={"Content-Type": "video/mp4"}
    )
    assert by_content.status_code == 200, by_content.text
    assert by_content.json()["matches"][0]["manifestId"] == released.manifest_label

    other = "AQAAAAAAAA=="  # key id 1, a payload nobody was given
    assert client.get(
        "/v1/matches/byBinding", params={"alg": wm.soft_binding_alg, "value": other}
    ).json() == {"matches": []}
    bad_value = client.get("/v1/matches/byBinding", params={"alg": wm.soft_binding_alg, "value": "%%%"})
    assert bad_value.status_code == 400 and "base64" in bad_value.json()["detail"]
    bad_alg = client.get("/v1/matches/byBinding", params={"alg": "com.example.other", "value": value})
    assert bad_alg.status_code == 400 and wm.soft_binding_alg in bad_alg.json()["detail"]
    assert client.get("/v1/manifests/urn:c2pa:unknown").status_code == 404
    not_video = client.post("/v1/matches/byContent", content=b"hello", headers={"Content-Type": "text/plain"})
    assert not_video.status_code == 415


@pytest.mark.slow
def test_verify_cli_recovers_through_a_remote_resolution_service(
    released, pipeline, trust_anchors, settings, hallmark_server, tmp_path, signers
):
    """A third party without the store asks the generator's public API for the original manifest."""
    base = hallmark_server(settings.data_dir)
    stripped = reencode(released.output, tmp_path / "shared.mp4", crf=28)
    resolver = HttpResolver(f"{base}/v1")
    report = verify(
        stripped, trust_anchors, pipeline.invisible_watermark, store=None, resolver=resolver, signers=signers
    )
    assert report.recovery.source == f"{base}/v1" and report.recovery.manifest_id == released.manifest_label
    assert report.conclusion.made_by_generator is True and report.conclusion.altered is True
    unreachable = HttpResolver("http://127.0.0.1:9/v1", timeout_s=2)
    report = verify(
        stripped, trust_anchors, pipeline.invisible_watermark, resolver=unreachable, signers=signers
    )
    assert (
        report.recovery.attempted
        and report.recovery.manifest is None
        and "127.0.0.1:9" in report.recovery.error
    )
    assert report.conclusion.made_by_generator is True, "the keyed watermark alone still says who made it"


@pytest.mark.slow
def test_store_resolver_checks_the_key_id(released, pipeline):
    resolver = StoreResolver(pipeline.audit, pipeline.invisible_watermark)
    from provenance.manifest import soft_binding_value

    alg = pipeline.invisible_watermark.soft_binding_alg
    good = soft_binding_value(released.watermark_payload, released.watermark_key_id)
    wrong_key = soft_binding_value(released.watermark_payload, (released.watermark_key_id + 1) % 256)
    assert resolver.matches(alg, good) == [released.manifest_label]
    assert resolver.matches(alg, wrong_key) == []


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.slow
def test_bad_uploads_are_clear_errors(client, released, tmp_path, pipeline, trust_anchors, signers):
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(natural_frames(1, (32, 32))[0]).save(png, format="PNG")
    r = client.post("/v1/verify", files={"file": ("photo.png", png.getvalue(), "image/png")})
    assert r.status_code == 422 and "not a readable video" in r.json()["detail"], r.text
    assert "an image (png" in r.json()["detail"]

    audio_only = tmp_path / "audio.mp4"
    with av.open(str(audio_only), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    r = client.post("/v1/verify", files={"file": ("audio.mp4", audio_only.read_bytes(), "video/mp4")})
    assert r.status_code == 422 and "no video stream" in r.json()["detail"]
    with pytest.raises(VideoError, match="no video stream"):
        verify(audio_only, trust_anchors, pipeline.invisible_watermark, signers=signers)

    data = released.output.read_bytes()
    r = client.post("/v1/verify", files={"file": ("cut.mp4", data[: len(data) // 2], "video/mp4")})
    assert r.status_code in (200, 422), r.text  # a report or a clear error, never a crash
    body = r.json()
    if r.status_code == 200:
        assert body["conclusion"]["altered"] is not False
        assert body["manifest"]["failures"] or body["manifest"]["error"] or not body["manifest"]["present"]
    else:
        assert "field 'file'" in body["detail"]


def test_upload_limit_is_enforced_while_the_body_arrives(settings):
    """The app stops reading a body once it passes the limit: driven at the ASGI level, where each
    chunk the app asks for is counted (a test client would buffer the whole body first)."""
    import asyncio

    app = create_app(settings.model_copy(update={"max_upload_mb": 1}))
    with TestClient(app) as c:  # runs the app's start-up
        declared = c.post("/v1/verify", files={"file": ("big.mp4", b"\0" * (2 * 1024 * 1024), "video/mp4")})
        assert declared.status_code == 413

    preamble = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        b"Content-Type: video/mp4\r\n\r\n"
    )

    async def upload(path: str, content_type: bytes) -> tuple[int, int]:
        pulled, sent = 0, []

        async def receive():
            nonlocal pulled
            pulled += 1
            head = preamble if pulled == 1 else b""
            return {"type": "http.request", "body": head + b"\0" * (256 * 1024), "more_body": pulled < 64}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", content_type), (b"transfer-encoding", b"chunked")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        await app(scope, receive, send)
        return next(m["status"] for m in sent if m["type"] == "http.response.start"), pulled

    for path, content_type in (
        ("/v1/matches/byContent", b"video/mp4"),
        ("/v1/verify", b"multipart/form-data; boundary=xyz"),
    ):
        status_code, pulled = asyncio.run(upload(path, content_type))
        assert status_code == 413 and pulled <= 6, (path, status_code, pulled)  # 1 MiB + framing = 5 chunks


@pytest.mark.slow
def test_manifest_json_round_trip(released, trust_anchors, pipeline, signers):
    report = verify(
        released.output, trust_anchors, pipeline.invisible_watermark, pipeline.audit, signers=signers
    )
    again = type(report).model_validate(json.loads(report.model_dump_json()))
    assert again == report


@pytest.mark.slow
def test_hallmark_video_resigned_by_another_tool_is_not_called_authentic(
    released, pipeline, trust_anchors, settings, tmp_path, signers
):
    """Strip the manifest and sign the copy with another trusted certificate, naming no watermark:
    the watermark in the pictures still leads to the original, and the report says so."""
    stripped = remux(released.output, tmp_path / "stripped.mp4")
    dev = ensure_dev_chain(settings.certs_dir)
    root, root_key = _root(dev)
    now = dt.datetime.now(dt.UTC)
    leaf, key = issue_signer(root, root_key, now - dt.timedelta(minutes=1), now + dt.timedelta(days=1))
    other = _write_chain(tmp_path / "other-tool", leaf, key, root)
    resigned = sign_as_other_tool(other, stripped, tmp_path / "resigned.mp4")
    report = verify(resigned, trust_anchors, pipeline.invisible_watermark, pipeline.audit, signers=signers)
    assert report.manifest.trusted and report.manifest.claim_generator == "Other editor 9"
    assert report.recovery.manifest_id == released.manifest_label
    c = report.conclusion
    assert c.made_by_generator is True and c.altered is True and c.policy == pipeline.policy.label
    assert not c.summary.startswith("Authentic") and "is not the one it was released with" in c.summary


def test_manifests_of_the_wrong_shape_are_reported_not_crashed_on():
    from provenance.manifest import SCREENING_ASSERTION, ManifestReading
    from provenance.verify import manifest_report

    crafted = {
        "label": "urn:c2pa:x",
        "claim_generator_info": ["not a dict"],
        "signature_info": "nope",
        "assertions": [
            {"label": SCREENING_ASSERTION, "data": ["a"]},
            {"label": "c2pa.soft-binding", "data": {"alg": 5, "blocks": ["x"]}},
            {
                "label": "c2pa.actions.v2",
                "data": {"actions": ["y", {"action": "c2pa.created", "softwareAgent": "z"}]},
            },
            {"label": "c2pa.training-mining", "data": {"entries": ["w"]}},
            "garbage",
        ],
        "ingredients": ["q", {"title": 3}],
    }
    report = manifest_report(ManifestReading(True, "Valid", [], crafted))
    assert report.present and report.error is None and report.label == "urn:c2pa:x"
    assert report.policy is None and report.soft_binding is None and report.training_mining is None
    assert [a["action"] for a in report.actions] == ["c2pa.created"] and report.model is None
    assert report.model_dump_json()  # and it serialises as an API response


def test_http_resolver_turns_bad_answers_into_errors_and_stays_on_its_host():
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from provenance.resolve import ResolutionError

    answers = {
        "/garbage/matches/byBinding": b"<html>not json</html>",
        "/elsewhere/matches/byBinding": json.dumps(
            {"matches": [{"manifestId": "urn:c2pa:1", "endpoint": "http://169.254.169.254/v1"}]}
        ).encode(),
        "/odd/matches/byBinding": json.dumps({"matches": ["not a dict"]}).encode(),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = answers.get(self.path.split("?")[0])
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        for name, message in (
            ("garbage", "not a Soft Binding Resolution API answer"),
            ("elsewhere", "another service"),
            ("odd", "not a Soft Binding"),
        ):
            with pytest.raises(ResolutionError, match=message):
                HttpResolver(f"{base}/{name}").resolve("org.hallmark.tilemark.v1", "AQAAAAAAAA==")
        assert HttpResolver(f"{base}/none").resolve("org.hallmark.tilemark.v1", "AQAAAAAAAA==") is None
    finally:
        server.shutdown()


def test_checkpoints_signed_through_a_p384_callback_verify(tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from audit import AuditStore, CheckpointKey

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "P-384 signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    store = AuditStore(
        f"sqlite:///{tmp_path / 'a.db'}",
        CheckpointKey(
            cert,
            sign_callback=local_sign_callback(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            ),
        ),
    )
    statement = store.checkpoint()
    assert statement.algorithm == "ecdsa-sha384"
    report = store.verify_chain()
    assert report.ok and report.checkpoints_checked == 1 and not report.warnings
