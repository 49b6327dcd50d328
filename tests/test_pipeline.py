"""The guarded pipeline end to end on the embedded default: real models, H.264, C2PA, SQLite."""

import json

import c2pa
import numpy as np
from conftest import natural_frames

from generator import GenerationRequest
from generator.backend import GenerationSpec
from moderation import NudityClassifier
from policy import Action, NudityRule, Thresholds
from provenance import InvisibleWatermark, decode_frames, sha256_file, verify
from provenance.manifest import TRAINED_ALGORITHMIC_MEDIA


def _reader(path, anchors):
    ctx = c2pa.Context(
        c2pa.Settings.from_dict({"trust": {"trust_anchors": anchors}, "verify": {"verify_trust": True}})
    )
    return c2pa.Reader(str(path), context=ctx)


def test_released_video_is_trusted_watermarked_and_audited(released, pipeline, trust_anchors):
    path = released.output
    assert path.is_file() and released.output_sha256 == sha256_file(path)
    assert not list(path.parent.glob(".*partial*")), "staging files must not be left behind"

    with _reader(path, trust_anchors) as reader:
        assert reader.get_validation_state() == "Trusted"
        manifest = reader.get_active_manifest()
    assert manifest["label"] == released.manifest_label
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    created = assertions["c2pa.actions.v2"]["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert created["softwareAgent"]["name"] == pipeline.backend.name
    screening = assertions["org.hallmark.screening"]
    assert screening["policy"] == pipeline.policy.label
    assert screening["generation_id"] == released.generation_id
    assert screening["uncalibrated"] == ["open_clip-ViT-B-32"]
    assert screening["classifiers"]["minilm-exemplars"]["highest"]["sexual"]["action"] == "allow"

    frames = decode_frames(path)
    assert frames.shape == (16, 256, 256, 3)
    reading = InvisibleWatermark().detect(frames)
    assert reading.detected and reading.payload == released.watermark_payload

    record = pipeline.audit.get(released.generation_id)
    assert record.status == "released" and record.output_sha256 == sha256_file(path)
    assert record.watermark_payload == released.watermark_payload
    assert record.manifest_label == released.manifest_label
    assert record.policy_version == pipeline.policy.version
    verdicts = pipeline.audit.verdicts(record.id)
    assert {v.stage for v in verdicts} == {"prompt", "frames"}
    assert any(v.classifier == "open_clip-ViT-B-32" and not v.calibrated for v in verdicts)
    assert len(verdicts) == len(released.verdicts)


def test_verify_reports_manifest_watermark_and_record(released, pipeline, trust_anchors):
    report = verify(released.output, trust_anchors, pipeline.invisible_watermark, pipeline.audit)
    assert report.manifest.present and report.manifest.valid and report.manifest.trusted
    assert [a["action"] for a in report.manifest.actions] == ["c2pa.created", "c2pa.watermarked"]
    assert report.manifest.model.startswith(pipeline.backend.name)
    assert report.watermark.detected and report.watermark.payload == released.watermark_payload
    assert report.record.generation_id == released.generation_id and report.record.matches_file
    assert any("Trusted" in line for line in report.summary())


def test_verify_without_the_dev_root_is_valid_but_untrusted(released, pipeline, tmp_path):
    from provenance import ensure_dev_chain

    other_root = ensure_dev_chain(tmp_path / "other").trust_anchors_pem().decode()
    report = verify(released.output, other_root, pipeline.invisible_watermark)
    assert report.manifest.valid and not report.manifest.trusted
    assert "signingCredential.untrusted" in report.manifest.failures


def test_one_changed_byte_makes_the_manifest_invalid(released, pipeline, trust_anchors, tmp_path):
    data = bytearray(released.output.read_bytes())
    mdat = data.find(b"mdat")
    data[mdat + 200] ^= 0xFF  # a byte of the H.264 stream
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    report = verify(tampered, trust_anchors, pipeline.invisible_watermark, pipeline.audit)
    assert report.manifest.present and not report.manifest.valid and not report.manifest.trusted
    assert report.manifest.validation_state == "Invalid"
    assert any("mismatch" in code for code in report.manifest.failures)
    assert report.record is None or not report.record.matches_file


def test_blocked_prompt_releases_nothing_and_records_the_verdict(pipeline, tmp_path):
    out = tmp_path / "never.mp4"
    result = pipeline(GenerationRequest(prompt="a naked woman posing on a bed", output=out))
    assert result.status == "blocked" and result.stage == "prompt"
    assert not out.exists() and not list(tmp_path.iterdir())
    assert "minilm-exemplars" in result.reason and "sexual" in result.reason
    record = pipeline.audit.get(result.generation_id)
    assert record.status == "blocked" and record.blocked_stage == "prompt"
    assert record.output_sha256 is None and record.watermark_payload is None
    blocking = [v for v in pipeline.audit.verdicts(record.id) if v.action == "block"]
    assert (
        blocking
        and blocking[0].classifier == "minilm-exemplars"
        and blocking[0].score >= blocking[0].threshold
    )
    assert {v.stage for v in pipeline.audit.verdicts(record.id)} == {"prompt"}  # stopped there


def test_obfuscated_blocklist_term_is_blocked(pipeline, tmp_path):
    result = pipeline(GenerationRequest(prompt="a short p0rn clip", output=tmp_path / "x.mp4"))
    assert result.status == "blocked"
    verdict = next(v for v in result.verdicts if v.action is Action.block)
    assert verdict.classifier == "blocklist" and verdict.detail == "matched 'porn'"


def test_input_image_is_screened_and_becomes_an_ingredient(pipeline, trust_anchors, tmp_path):
    image = natural_frames(1)[0]
    result = pipeline(
        GenerationRequest(prompt="steam rising from a cup", output=tmp_path / "cup.mp4", image=image)
    )
    assert result.status == "released", result.reason
    image_verdicts = [v for v in result.verdicts if v.stage == "image"]
    assert image_verdicts and image_verdicts[0].classifier == "nudenet-320n"
    record = pipeline.audit.get(result.generation_id)
    assert record.input_image_sha256 and len(record.input_image_sha256) == 64
    with _reader(result.output, trust_anchors) as reader:
        assert reader.get_validation_state() == "Trusted"
        manifest = reader.get_active_manifest()
    assert [i["relationship"] for i in manifest["ingredients"]] == ["inputTo"]


def test_input_image_blocked_by_policy_stops_before_generation(variant, tmp_path):
    from skimage import data

    detector = variant.image_classifiers[0]._detector
    # A policy that refuses faces: NudeNet finds one in the astronaut photograph.
    rule = NudityRule(category="faces", labels=["FACE_FEMALE"], thresholds=Thresholds(block=0.3))
    variant.image_classifiers = [NudityClassifier(detector, rule, stage="image")]
    result = variant(
        GenerationRequest(prompt="a portrait", output=tmp_path / "p.mp4", image=data.astronaut())
    )
    assert result.status == "blocked" and result.stage == "image"
    assert "generate" not in result.timings and not (tmp_path / "p.mp4").exists()
    assert variant.audit.get(result.generation_id).blocked_stage == "image"


def test_signing_failure_fails_closed(variant, settings, tmp_path):
    import shutil

    from provenance import ManifestSigner, SigningMaterial, ensure_dev_chain

    material = ensure_dev_chain(tmp_path / "certs")
    signer = ManifestSigner(
        SigningMaterial(material.chain_path, material.key_path, material.trust_anchors_path)
    )
    variant.signer = signer
    shutil.rmtree(tmp_path / "certs")  # the key disappears after start-up
    out = tmp_path / "out" / "v.mp4"
    result = variant(GenerationRequest(prompt="a lighthouse at night", output=out))
    assert result.status == "error" and result.stage == "sign"
    assert not out.exists() and list(out.parent.iterdir()) == []
    record = variant.audit.get(result.generation_id)
    assert record.status == "error" and record.blocked_stage == "sign" and record.output_sha256 is None


def test_watermark_failure_fails_closed(variant, tmp_path):
    class BrokenWatermark(InvisibleWatermark):
        def embed(self, frames, payload):
            raise RuntimeError("embedding hardware fault")

    variant.invisible_watermark = BrokenWatermark()
    out = tmp_path / "w.mp4"
    result = variant(GenerationRequest(prompt="a lighthouse at night", output=out))
    assert (result.status, result.stage) == ("error", "invisible_watermark")
    assert "embedding hardware fault" in result.reason and not out.exists()


def test_same_seed_same_frames_other_seed_other_frames(pipeline):
    spec = GenerationSpec(prompt="a red kite", num_frames=4, height=128, width=128, steps=2, seed=3)
    a = pipeline.backend.generate(spec)
    b = pipeline.backend.generate(spec)
    c = pipeline.backend.generate(GenerationSpec(**{**spec.__dict__, "seed": 4}))
    assert a.shape == (4, 128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_requests_are_refused_with_a_reason(pipeline, tmp_path):
    long = pipeline(GenerationRequest(prompt="x" * 5000, output=tmp_path / "l.mp4"))
    assert long.status == "error" and "policy allows 2000" in long.reason
    wrong = pipeline(GenerationRequest(prompt="a boat", output=tmp_path / "l.gif"))
    assert wrong.status == "error" and ".mp4" in wrong.reason
    assert json.loads(json.dumps([v.to_dict() for v in long.verdicts])) == []
