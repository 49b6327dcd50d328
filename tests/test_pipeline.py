"""The guarded pipeline end to end on the embedded default: real models, H.264, C2PA, SQLite."""

import base64
import copy

import c2pa
import numpy as np
import pytest
from conftest import natural_frames

from generator import GenerationRequest
from generator.backend import GenerationSpec
from moderation import NudityClassifier
from policy import Action, NudityRule, Thresholds
from provenance import decode_frames, sha256_file, verify
from provenance.manifest import TRAINED_ALGORITHMIC_MEDIA


def _reader(path, anchors):
    ctx = c2pa.Context(
        c2pa.Settings.from_dict({"trust": {"trust_anchors": anchors}, "verify": {"verify_trust": True}})
    )
    return c2pa.Reader(str(path), context=ctx)


@pytest.mark.slow
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
    training = assertions["cawg.training-mining"]["entries"]
    assert training["cawg.ai_generative_training"]["use"] == pipeline.policy.provenance.training_mining
    screening = assertions["org.hallmark.screening"]
    assert screening["policy"] == pipeline.policy.label
    assert screening["generation_id"] == released.generation_id
    assert screening["uncalibrated"] == ["open_clip-ViT-B-32"]
    assert screening["classifiers"]["hallmark-prompt"]["highest"]["sexual"]["action"] == "allow"

    frames = decode_frames(path)
    assert frames.shape == (16, 256, 256, 3)
    mark = pipeline.invisible_watermark
    reading = mark.detect(frames)
    assert reading.detected and reading.payload == released.watermark_payload
    assert (reading.method, reading.key_id) == ("hallmark/tilemark-v1", mark.key_id)
    assert reading.false_positive_probability <= 1e-6
    binding = assertions["c2pa.soft-binding"]
    assert binding["alg"] == "org.hallmark.tilemark.v1"
    assert base64.b64decode(binding["blocks"][0]["value"]) == bytes([mark.key_id]) + bytes.fromhex(
        released.watermark_payload
    )
    watermarked = assertions["c2pa.actions.v2"]["actions"][1]
    assert watermarked["action"] == "c2pa.watermarked" and watermarked["softwareAgent"]["name"] == mark.name

    record = pipeline.audit.get(released.generation_id)
    assert record.status == "released" and record.output_sha256 == sha256_file(path)
    assert record.watermark_payload == released.watermark_payload
    assert record.manifest_label == released.manifest_label
    assert record.policy_version == pipeline.policy.version
    assert record.watermark_key_id == released.watermark_key_id and record.watermark_method == mark.name
    verdicts = pipeline.audit.verdicts(record.seq)
    assert {v.stage for v in verdicts} == {"prompt", "frames"}
    assert any(v.classifier == "open_clip-ViT-B-32" and not v.calibrated for v in verdicts)
    assert len(verdicts) == len(released.verdicts)


@pytest.mark.slow
def test_verify_reports_manifest_watermark_and_record(released, pipeline, trust_anchors, signers):
    report = verify(
        released.output, trust_anchors, pipeline.invisible_watermark, pipeline.audit, signers=signers
    )
    assert report.manifest.present and report.manifest.valid and report.manifest.trusted
    assert [a["action"] for a in report.manifest.actions] == ["c2pa.created", "c2pa.watermarked"]
    assert report.manifest.model.startswith(pipeline.backend.name)
    assert report.watermark.detected and report.watermark.payload == released.watermark_payload
    assert report.record.generation_id == released.generation_id and report.record.matches_file
    assert any("Trusted" in line for line in report.summary())


def test_blocked_prompt_releases_nothing_and_records_the_verdict(pipeline, tmp_path):
    out = tmp_path / "never.mp4"
    result = pipeline(GenerationRequest(prompt="a naked woman posing on a bed", output=out))
    assert result.status == "blocked" and result.stage == "prompt"
    assert not out.exists() and not list(tmp_path.iterdir())
    assert "hallmark-prompt" in result.reason
    record = pipeline.audit.get(result.generation_id)
    assert record.status == "blocked" and record.blocked_stage == "prompt"
    assert record.output_sha256 is None and record.watermark_payload is None
    blocking = [v for v in pipeline.audit.verdicts(record.seq) if v.action == "block"]
    assert blocking and all(v.classifier == "hallmark-prompt" and v.score >= v.threshold for v in blocking)
    assert "sexual" in {v.category for v in blocking}
    assert {v.stage for v in pipeline.audit.verdicts(record.seq)} == {"prompt"}  # stopped there


def test_obfuscated_blocklist_term_is_blocked(pipeline, tmp_path):
    result = pipeline(GenerationRequest(prompt="a short p0rn clip", output=tmp_path / "x.mp4"))
    assert result.status == "blocked"
    verdict = next(v for v in result.verdicts if v.action is Action.block)
    assert verdict.classifier == "blocklist" and verdict.detail == "matched 'porn'"


@pytest.mark.slow
def test_input_image_is_screened_and_becomes_an_ingredient(pipeline, trust_anchors, tmp_path):
    image = natural_frames(1)[0]
    result = pipeline(
        GenerationRequest(prompt="steam rising from a cup", output=tmp_path / "cup.mp4", image=image)
    )
    assert result.status == "released", result.reason
    image_verdicts = [v for v in result.verdicts if v.stage == "image"]
    assert image_verdicts and image_verdicts[0].classifier == "nudenet-320n"
    record = pipeline.audit.get(result.generation_id)
    image_sha = pipeline.audit.content(record.seq).input_image_sha256
    assert image_sha and len(image_sha) == 64
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_watermark_failure_fails_closed(variant, tmp_path):
    def broken_embed(frames, payload):
        raise RuntimeError("embedding hardware fault")

    variant.invisible_watermark = copy.copy(variant.invisible_watermark)
    variant.invisible_watermark.embed = broken_embed
    out = tmp_path / "w.mp4"
    result = variant(GenerationRequest(prompt="a lighthouse at night", output=out))
    assert (result.status, result.stage) == ("error", "invisible_watermark")
    assert "embedding hardware fault" in result.reason
    assert list(tmp_path.iterdir()) == [], "no output, placeholder or staging file may remain"
    record = variant.audit.get(result.generation_id)
    assert (record.status, record.blocked_stage) == ("error", "invisible_watermark")
    assert "embedding hardware fault" in record.reason and record.output_sha256 is None


@pytest.mark.slow
def test_unreadable_watermark_fails_the_release_check(variant, tmp_path):
    variant.crf = 51  # H.264 at its coarsest: the watermark does not survive
    out = tmp_path / "c.mp4"
    result = variant(GenerationRequest(prompt="a lighthouse at night", output=out, seed=2))
    assert (result.status, result.stage) == ("error", "release_check")
    assert "does not carry its watermark payload" in result.reason
    assert list(tmp_path.iterdir()) == []
    assert variant.audit.get(result.generation_id).status == "error"


@pytest.mark.slow
def test_failed_audit_write_releases_nothing(variant, tmp_path):
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from audit import AuditStore

    url = f"sqlite:///{tmp_path / 'broken.db'}"
    variant.audit = AuditStore(url)
    with create_engine(url).begin() as conn:
        conn.execute(text("DROP TABLE verdicts"))
    out = tmp_path / "a.mp4"
    with pytest.raises(OperationalError, match="no such table: verdicts"):
        variant(GenerationRequest(prompt="a lighthouse at night", output=out))
    assert not [p.name for p in tmp_path.iterdir() if not p.name.startswith("broken.db")]  # (and its WAL)


@pytest.mark.slow
def test_calibrated_frame_filter_blocks_at_the_frames_stage(variant, tmp_path):
    import torch

    from moderation import ClipConceptFilter
    from policy import ClipConcept

    clip = next(c for c in variant.frame_classifiers if isinstance(c, ClipConceptFilter))
    checkpoint = tmp_path / "clip.pt"
    torch.save(clip._model.state_dict(), checkpoint)
    # A deployment that names its checkpoint and a threshold every frame reaches.
    concepts = {"anything": ClipConcept(prompts=["a photo"], thresholds=Thresholds(block=0.0))}
    variant.frame_classifiers = [ClipConceptFilter(concepts, pretrained=str(checkpoint))]
    out = tmp_path / "out" / "f.mp4"
    result = variant(GenerationRequest(prompt="a lighthouse at night", output=out))
    assert (result.status, result.stage) == ("blocked", "frames")
    assert "generate" in result.timings and "visible_watermark" not in result.timings
    assert not out.exists() and list(out.parent.iterdir()) == []
    record = variant.audit.get(result.generation_id)
    frames = [v for v in variant.audit.verdicts(record.seq) if v.stage == "frames"]
    assert record.blocked_stage == "frames" and frames[0].action == "block" and frames[0].calibrated


@pytest.mark.slow
def test_existing_output_is_kept_unless_overwrite(pipeline, tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    result = pipeline(GenerationRequest(prompt="a lighthouse at night", output=out, num_frames=8))
    assert (result.status, result.stage) == ("refused", "request") and "exists" in result.reason
    assert out.read_bytes() == b"precious"
    again = pipeline(
        GenerationRequest(prompt="a lighthouse at night", output=out, num_frames=8, overwrite=True)
    )
    assert again.released and out.read_bytes() != b"precious"


def test_non_finite_score_fails_closed():
    from moderation import decide

    with pytest.raises(ValueError, match="non-finite"):
        decide("frames", "c", "1", "x", float("nan"), Thresholds(block=0.5))


@pytest.mark.slow
def test_same_seed_same_frames_other_seed_other_frames(pipeline):
    spec = GenerationSpec(prompt="a red kite", num_frames=4, height=128, width=128, steps=2, seed=3)
    a = pipeline.backend.generate(spec)
    b = pipeline.backend.generate(spec)
    c = pipeline.backend.generate(GenerationSpec(**{**spec.__dict__, "seed": 4}))
    assert a.shape == (4, 128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_requests_are_refused_with_a_reason(pipeline, tmp_path):
    long = pipeline(GenerationRequest(prompt="x" * 5000, output=tmp_path / "l.mp4"))
    assert (long.status, long.stage) == ("refused", "request") and "policy allows 2000" in long.reason
    wrong = pipeline(GenerationRequest(prompt="a boat", output=tmp_path / "l.gif"))
    assert (wrong.status, wrong.stage) == ("refused", "request") and ".mp4" in wrong.reason
    short = pipeline(GenerationRequest(prompt="a boat", output=tmp_path / "s.mp4", num_frames=4))
    assert (short.status, short.stage) == ("refused", "request") and "at least 8 frames" in short.reason
    assert long.verdicts == [] and list(tmp_path.iterdir()) == []
    record = pipeline.audit.get(long.generation_id)
    assert (record.status, record.blocked_stage) == ("refused", "request") and pipeline.audit.content(
        record.seq
    ).prompt == "x" * 5000
