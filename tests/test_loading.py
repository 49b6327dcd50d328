"""The paths real users take: a diffusers checkpoint directory, a CLIP checkpoint file, a
configured signing chain. Each is exercised with files written here, loaded by the same code."""

import numpy as np
import pytest
import torch

from generator import DiffusersBackend, GeneratorError
from generator.backend import GenerationSpec
from moderation import ClipConceptFilter
from policy import ClipConcept, Thresholds


def test_pipeline_loads_from_a_local_directory_like_a_hub_checkpoint(tmp_path):
    tiny = DiffusersBackend.tiny()
    tiny._pipe.save_pretrained(tmp_path / "model")
    loaded = DiffusersBackend.from_pretrained(str(tmp_path / "model"))
    assert loaded.name == str(tmp_path / "model") and loaded.version == "local"
    spec = GenerationSpec(prompt="a red kite", num_frames=3, height=128, width=128, steps=2, seed=5)
    # Same weights, same seed: the same frames, up to float rounding at the last uint8 step.
    a, b = loaded.generate(spec).astype(int), tiny.generate(spec).astype(int)
    assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3
    with pytest.raises(GeneratorError, match="text-to-video; it takes no input image"):
        loaded.generate(GenerationSpec(prompt="x", image=np.zeros((64, 64, 3), np.uint8)))


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(
        GeneratorError, match="cannot load diffusers pipeline from hub id 'no-such/model-here'"
    ):
        DiffusersBackend.from_pretrained("no-such/model-here")


def test_clip_filter_loads_a_local_checkpoint_and_reports_it_calibrated(tmp_path):
    concepts = {"c": ClipConcept(prompts=["a photo of a cat"], thresholds=Thresholds(block=0.9))}
    base = ClipConceptFilter(concepts, pretrained=None)
    checkpoint = tmp_path / "clip-vit-b-32.pt"
    torch.save(base._model.state_dict(), checkpoint)
    loaded = ClipConceptFilter(concepts, pretrained=str(checkpoint))
    assert loaded.calibrated and loaded.version.startswith("clip-vit-b-32.pt")
    frames = np.random.default_rng(1).integers(0, 255, (2, 240, 320, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.similarities(frames)["c"], base.similarities(frames)["c"], atol=1e-5)
    (verdict,) = loaded.classify(frames)
    assert verdict.calibrated


@pytest.mark.slow
def test_configured_signing_chain_replaces_the_dev_chain(tmp_path, released):
    from hallmark.compose import signing_material, trust_anchors_pem
    from hallmark.settings import Settings
    from provenance import ManifestSigner, ensure_dev_chain, read_manifest
    from provenance.manifest import ManifestFacts

    org = ensure_dev_chain(tmp_path / "org-ca", organisation="Example Org")
    settings = Settings(
        data_dir=tmp_path / "data",
        signing_chain=org.chain_path,
        signing_key=org.key_path,
        trust_anchors=org.trust_anchors_path,
    )
    material = signing_material(settings)
    assert material.chain_path == org.chain_path and not (tmp_path / "data" / "certs").exists()
    signer = ManifestSigner(material)
    assert "Example Org" in signer.certificate_subject
    unsigned = tmp_path / "unsigned.mp4"
    from provenance import decode_frames, encode_mp4

    encode_mp4(decode_frames(released.output), unsigned)
    facts = ManifestFacts(
        generation_id="g",
        title="t.mp4",
        model_name="m",
        model_version="1",
        policy="p@v",
        screening={},
        watermark_method="w",
        watermark_payload="00" * 6,
        watermark_alg="org.example.w",
        claim_generator_version="0",
    )
    signer.sign(unsigned, tmp_path / "signed.mp4", facts)
    assert read_manifest(tmp_path / "signed.mp4", trust_anchors_pem(settings)).validation_state == "Trusted"
    with pytest.raises(ValueError, match="set HALLMARK_SIGNING_CHAIN with HALLMARK_SIGNING_KEY"):
        signing_material(Settings(data_dir=tmp_path, signing_chain=org.chain_path))
    with pytest.raises(ValueError, match="needs HALLMARK_TRUST_ANCHORS"):
        signing_material(Settings(data_dir=tmp_path, signing_chain=org.chain_path, signing_key=org.key_path))
