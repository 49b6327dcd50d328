"""TileMark, Hallmark's keyed video watermark: real H.264 encodes, real crops and rescales, real keys.

Small clips keep these fast; bench/watermark.py measures the full attack table at 480p and 1080p.
"""

import stat

import cv2
import numpy as np
import pytest

from provenance import (
    TileMark,
    WatermarkError,
    WatermarkKey,
    decode_frames,
    encode_mp4,
    ensure_dev_watermark_keys,
    load_watermark_keys,
    rotate_watermark_keys,
)
from provenance.tilemark import (
    CODED_BITS,
    conv_encode,
    crc24,
    message_bits,
    parse_message,
    viterbi,
)

KEY_A = WatermarkKey(7, b"test-key-a-not-a-secret-0000")
KEY_B = WatermarkKey(9, b"test-key-b-not-a-secret-1111")
PAYLOAD = bytes.fromhex("5eed0fca7b01")


def panning_clip(count: int = 24, size: tuple[int, int] = (854, 480), step: int = 1) -> np.ndarray:
    """A photograph (scikit-image ships it) panning `step` pixels a frame, like a slow camera move.

    Fast pans under strong compression are the mark's known weak spot (see bench/RESULTS.md).
    """
    from skimage import data

    w, h = size
    wide = cv2.resize(data.astronaut(), (w + step * count, h), interpolation=cv2.INTER_AREA)
    return np.stack([wide[:, step * i : step * i + w] for i in range(count)])


def h264(frames: np.ndarray, tmp_path, crf: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    frames = np.ascontiguousarray(frames[:, : h - h % 2, : w - w % 2])
    path = tmp_path / f"crf{crf}-{w}x{h}.mp4"
    encode_mp4(frames, path, fps=24, crf=crf)
    return decode_frames(path)


def crop(frames: np.ndarray, frac: float, centre: bool = True) -> np.ndarray:
    h, w = frames.shape[1:3]
    dh, dw = int(h * frac), int(w * frac)
    top, left = (dh // 2, dw // 2) if centre else (dh // 4, (3 * dw) // 4)
    return frames[:, top : top + h - dh, left : left + w - dw]


def downscale(frames: np.ndarray, factor: float) -> np.ndarray:
    h, w = frames.shape[1:3]
    size = (round(w * factor), round(h * factor))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


@pytest.fixture(scope="module")
def clip():
    """A static shot: the attack table's combined attacks sit near the limit on a panning one."""
    return panning_clip(step=0)


@pytest.fixture(scope="module")
def marked(clip):
    return TileMark([KEY_A]).embed(clip, PAYLOAD)


def test_mark_is_invisible_by_the_numbers(clip, marked):
    from skimage.metrics import structural_similarity

    assert marked.shape == clip.shape and marked.dtype == np.uint8
    mse = np.mean((marked.astype(np.float64) - clip) ** 2)
    assert 10 * np.log10(255**2 / mse) >= 40
    # A photograph with large flat areas is the hard case for SSIM (bench/RESULTS.md has the
    # Big Buck Bunny figures); this guards against a visibly stronger mark.
    assert structural_similarity(clip[0], marked[0], channel_axis=2) >= 0.95


@pytest.mark.parametrize(
    "attack",
    [
        "h264-crf28",
        "centre-crop-10%+h264",
        "off-centre-crop-10%+h264",
        "downscale-50%+h264",
        "crf28+50%-down+5%-crop",
        "brightness+20%",
        "every-other-frame",
    ],
)
def test_exact_payload_survives_real_handling(marked, attack, tmp_path):
    attacked = {
        "h264-crf28": lambda f: h264(f, tmp_path, 28),
        "centre-crop-10%+h264": lambda f: h264(crop(f, 0.10), tmp_path, 23),
        "off-centre-crop-10%+h264": lambda f: h264(crop(f, 0.10, centre=False), tmp_path, 23),
        "downscale-50%+h264": lambda f: h264(downscale(f, 0.5), tmp_path, 23),
        "crf28+50%-down+5%-crop": lambda f: h264(crop(downscale(f, 0.5), 0.05), tmp_path, 28),
        "brightness+20%": lambda f: np.clip(f.astype(np.float32) * 1.2, 0, 255).astype(np.uint8),
        "every-other-frame": lambda f: f[::2],
    }[attack](marked)
    reading = TileMark([KEY_A]).detect(attacked)
    assert reading.detected, reading.details
    assert (reading.payload, reading.key_id, reading.method) == (PAYLOAD.hex(), 7, "hallmark/tilemark-v1")
    assert 0 < reading.false_positive_probability <= 1e-6
    assert reading.false_positive_probability == reading.details["attempts"] * 2.0**-32


def test_a_panning_shot_survives_h264_and_a_crop(tmp_path):
    pan = panning_clip(48, step=2)
    marked = TileMark([KEY_B]).embed(pan, PAYLOAD)
    reading = TileMark([KEY_B]).detect(h264(crop(marked, 0.1), tmp_path, 23))
    assert (reading.payload, reading.key_id) == (PAYLOAD.hex(), 9), reading.details


def test_frames_stream_from_a_decoder_as_grey(marked, tmp_path):
    from provenance.video import iter_frames

    path = tmp_path / "m.mp4"
    encode_mp4(marked, path, fps=24, crf=23)
    reading = TileMark([KEY_A]).detect(iter_frames(path, format="gray"))
    assert reading.payload == PAYLOAD.hex() and reading.frames_read == len(marked)


def test_unmarked_video_and_wrong_key_detect_nothing(clip, marked, tmp_path):
    reader = TileMark([KEY_A])
    for frames in (clip, h264(clip, tmp_path, 23), crop(clip, 0.1), clip[:1]):
        reading = reader.detect(frames)
        assert not reading.detected and reading.payload is None and reading.false_positive_probability is None
    assert not TileMark([KEY_B]).detect(marked).detected
    # A key ring reads what any of its keys embedded, and says which key it was.
    ring = TileMark([KEY_B, KEY_A]).detect(marked)
    assert ring.detected and ring.key_id == 7 and ring.payload == PAYLOAD.hex()


def test_natural_video_has_no_tilemark(shared_data):
    video = shared_data / "video" / "big_buck_bunny.mp4"
    if not video.exists():
        pytest.skip(f"{video} not found")
    from provenance.video import iter_frames

    reader = TileMark([KEY_A], window=24)
    reading = reader.detect(iter_frames(video, max_frames=24 * 6, format="gray"))
    assert not reading.detected and reading.details["windows"] == 6


def test_a_stricter_threshold_limits_decode_attempts(marked):
    strict = TileMark([KEY_A], max_false_positive_probability=2.0**-32)  # one attempt only
    reading = strict.detect(marked)
    assert reading.detected and reading.details["attempts"] == 1  # the untouched geometry decodes first
    cropped = crop(marked, 0.1)
    assert TileMark([KEY_A]).detect(cropped).detected
    assert not strict.detect(cropped).detected  # would need the scale search, i.e. more attempts


def test_bad_input_is_refused_clearly(clip):
    mark = TileMark([KEY_A])
    with pytest.raises(WatermarkError, match="payload must be 6 bytes"):
        mark.embed(clip, b"short")
    with pytest.raises(WatermarkError, match="too small"):
        mark.embed(clip[:, :64, :64], PAYLOAD)
    with pytest.raises(WatermarkError, match="uint8"):
        mark.embed(clip.astype(np.float32), PAYLOAD)
    with pytest.raises(WatermarkError, match="unique"):
        TileMark([KEY_A, WatermarkKey(7, b"another-secret-of-key-7")])
    with pytest.raises(WatermarkError, match="at least 16 bytes"):
        WatermarkKey(1, b"short")
    assert "test-key" not in repr(KEY_A)


def test_message_coding_corrects_errors_and_checks_crc():
    assert crc24(b"123456789") == 0x21CF02  # CRC-24/OPENPGP check value
    bits = message_bits(PAYLOAD, 7)
    coded = conv_encode(bits)
    assert len(coded) == CODED_BITS
    soft = 2.0 * coded - 1.0
    rng = np.random.default_rng(0)
    flipped = rng.choice(CODED_BITS, size=8, replace=False)
    soft[flipped] *= -1  # eight hard errors, spread out
    assert parse_message(viterbi(soft)) == (PAYLOAD, 7)
    bad = bits.copy()
    bad[3] ^= 1
    assert parse_message(bad) is None


def test_key_file_is_private_rotates_and_explains_errors(tmp_path):
    path = tmp_path / "keys" / "watermark-keys.toml"
    first = ensure_dev_watermark_keys(path)
    assert [k.key_id for k in first] == [1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_dev_watermark_keys(path) == first  # created once
    new = rotate_watermark_keys(path)
    keys = load_watermark_keys(path)
    assert [(k.key_id, k.retired) for k in keys] == [(2, False), (1, True)] and new.key_id == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    old_marked = TileMark(first).embed(panning_clip(12), PAYLOAD)
    reading = TileMark(keys).detect(old_marked)
    assert reading.key_id == 1 and reading.payload == PAYLOAD.hex()
    assert TileMark(keys).key_id == 2

    bad = tmp_path / "bad.toml"
    bad.write_text('[[keys]]\nid = 1\nsecret = "zz"\n')
    with pytest.raises(WatermarkError, match="hex 'secret'"):
        load_watermark_keys(bad)
    bad.write_text('[[keys]]\nid = 1\nsecret = "' + "ab" * 32 + '"\nretired = true\n')
    with pytest.raises(WatermarkError, match="every key is retired"):
        load_watermark_keys(bad)
