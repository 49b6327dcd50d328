"""Watermarks, H.264 and certificates, each through the real library."""

import stat

import numpy as np
import pytest
from conftest import natural_frames

from policy import VisibleWatermarkPolicy
from provenance import (
    CertificateError,
    InvisibleWatermark,
    SigningMaterial,
    VideoError,
    VisibleWatermark,
    check_chain,
    decode_frames,
    encode_mp4,
    ensure_dev_chain,
)
from provenance.invisible import bits_to_payload, crc16, payload_to_bits


def test_h264_round_trip_keeps_size_count_and_content(tmp_path):
    frames = natural_frames(12)
    encode_mp4(frames, tmp_path / "v.mp4", fps=8, crf=18)
    import av

    with av.open(str(tmp_path / "v.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].pix_fmt == "yuv420p"
    decoded = decode_frames(tmp_path / "v.mp4")
    assert decoded.shape == frames.shape
    psnr = 10 * np.log10(255**2 / np.mean((decoded.astype(float) - frames) ** 2))
    assert psnr > 30


def test_video_errors_are_typed(tmp_path):
    with pytest.raises(VideoError, match="even size"):
        encode_mp4(np.zeros((2, 15, 16, 3), np.uint8), tmp_path / "odd.mp4")
    with pytest.raises(VideoError, match="uint8"):
        encode_mp4(np.zeros((2, 16, 16, 3), np.float32), tmp_path / "f.mp4")
    not_video = tmp_path / "text.mp4"
    not_video.write_text("hello")
    with pytest.raises(VideoError, match="cannot decode"):
        decode_frames(not_video)


def test_payload_bits_round_trip_and_crc_rejects_errors():
    payload = bytes.fromhex("a1b2c3d4e5f6")
    bits = np.array(payload_to_bits(payload))
    assert len(bits) == 64 and bits_to_payload(bits) == payload
    flipped = bits.copy()
    flipped[5] ^= 1
    assert bits_to_payload(flipped) is None
    assert crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


def test_invisible_watermark_survives_h264_and_is_absent_from_unmarked_video(tmp_path):
    wm = InvisibleWatermark()
    frames = natural_frames(16)
    payload = bytes.fromhex("0badc0ffee42")
    marked = wm.embed(frames, payload)
    psnr = 10 * np.log10(255**2 / np.mean((marked.astype(float) - frames) ** 2))
    assert psnr > 30
    encode_mp4(marked, tmp_path / "marked.mp4", crf=18)
    encode_mp4(frames, tmp_path / "plain.mp4", crf=18)
    reading = wm.detect(decode_frames(tmp_path / "marked.mp4"))
    assert reading.detected and reading.payload == payload.hex() and reading.details["bit_agreement"] > 0.8
    assert not wm.detect(decode_frames(tmp_path / "plain.mp4")).detected


def test_natural_video_has_no_watermark(shared_data):
    video = shared_data / "video" / "big_buck_bunny.mp4"
    if not video.exists():
        pytest.skip(f"{video} not found")
    frames = decode_frames(video, max_frames=48)
    assert frames.shape[1:] == (360, 640, 3)
    wm = InvisibleWatermark()
    for start in (0, 16, 32):
        assert not wm.detect(frames[start : start + 16]).detected


def test_visible_watermark_changes_only_its_corner():
    frames = natural_frames(2)
    out = VisibleWatermark(VisibleWatermarkPolicy(position="bottom-right")).apply(frames)
    changed = np.any(out != frames, axis=(0, 3))
    h, w = changed.shape
    assert changed[h // 2 :, w // 2 :].sum() > 100
    assert changed[: h // 2, :].sum() == 0 and changed[:, : w // 3].sum() == 0
    off = VisibleWatermark(VisibleWatermarkPolicy(enabled=False)).apply(frames)
    assert off is frames


def test_dev_chain_is_created_once_with_private_key_for_owner_only(tmp_path):
    material = ensure_dev_chain(tmp_path / "certs")
    assert stat.S_IMODE(material.key_path.stat().st_mode) == 0o600
    leaf = check_chain(material)
    assert "C2PA signer" in leaf.subject.rfc4514_string()
    again = ensure_dev_chain(tmp_path / "certs")
    assert again.chain_pem() == material.chain_pem()


def test_check_chain_rejects_mismatched_key_and_garbage(tmp_path):
    a = ensure_dev_chain(tmp_path / "a")
    b = ensure_dev_chain(tmp_path / "b")
    with pytest.raises(CertificateError, match="does not match"):
        check_chain(SigningMaterial(a.chain_path, b.key_path, a.trust_anchors_path))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(CertificateError, match="not a PEM certificate chain"):
        check_chain(SigningMaterial(garbage, a.key_path, a.trust_anchors_path))
