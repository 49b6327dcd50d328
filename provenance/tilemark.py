"""TileMark: Hallmark's keyed video watermark, built to survive re-encoding, rescaling and cropping.

How it works, in one place:

* **Pattern.** A tile of 32 x 32 "chips" repeats over every frame with a period of half the frame
  height, so a chip is 1/64 of the height (7.5 px at 480p, 17 px at 1080p). Tying the pattern to
  the height makes it scale with the picture: after a downscale the detector sees the same
  pattern at the same relative size. Each chip carries a keyed sync value plus one chip of a
  coded bit; the tile is interpolated smoothly (bilinear) into a luma offset added to R, G and B.
  The pattern is the same in every frame, so averaging frames adds it up while moving content
  averages away, and dropped, trimmed or re-timed frames change nothing.
* **Message.** 48 payload bits + 8-bit key id + CRC-24 = 80 bits, convolutionally coded (rate 1/2,
  constraint length 7) into 172 bits, each spread over about 6 keyed chips per tile. Everything
  keyed (sync values, chip permutation, spreading signs, scrambling) derives from an HMAC of a
  secret per deployment, so without the key the pattern can be neither read nor forged.
* **Informed embedding.** The embedder runs the detector's own front end on the mean picture of
  each 1-second segment, sees how the picture itself projects onto each coded bit and onto the
  sync, and adds just enough extra amplitude to the bits the picture works against (then checks
  once more and tops up). This removes most host interference, the thing that limits blind
  spread-spectrum marks, at a fixed PSNR per frame. Working on segment means rather than single
  frames is what the detector sees, and moving content costs less to cancel.
* **Detection.** Frames are reduced to luma at a working height of 256, averaged, whitened
  (high-pass, then divided by the local variance; a brightness or contrast change only rescales
  the result), then for each candidate scale (crop ratios 1 to 1.4) folded onto one tile
  period and cross-correlated with the sync tile by FFT; the peak gives the crop offset. The
  untouched geometry is decoded first, then the best sync candidates (soft Viterbi); a candidate
  is accepted only when CRC-24 and key id match. Known weak spot: fast camera pans under strong
  compression (the encoder drags the static pattern along with the moving picture).
* **False positives.** For an unmarked window each decode attempt passes the 32-bit check (CRC-24
  and key id) with probability 2^-32, so the reported false-positive probability is
  attempts x 2^-32; bench/watermark_fpr.py measures it empirically on unmarked windows.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from provenance.watermark import WatermarkError, WatermarkKey, WatermarkReading

METHOD = "hallmark/tilemark-v1"
SOFT_BINDING_ALG = "org.hallmark.tilemark.v1"  # the name C2PA soft-binding assertions use
PAYLOAD_BITS = 48
KEY_ID_BITS = 8
CRC_BITS = 24
MESSAGE_BITS = PAYLOAD_BITS + KEY_ID_BITS + CRC_BITS
CONSTRAINT = 7
GENERATORS = (0o133, 0o171)
CODED_BITS = 2 * (MESSAGE_BITS + CONSTRAINT - 1)

TILE_CHIPS = 32  # chips per tile side; the tile period is half the frame height
WORK_HEIGHT = 256  # detector working height: the tile period is 128 samples, a chip 4
WORK_PERIOD = WORK_HEIGHT // 2
SYNC_WEIGHT = 1.5  # sync amplitude relative to data chips
DATA_AMPLITUDE = 1 / np.sqrt(1 + SYNC_WEIGHT**2)  # a data chip's amplitude in a unit-power chip
HIGHPASS_SIGMA = 3.0  # whitening, in working samples
NORM_SIGMA = 2.5  # local variance window, in working samples
NORM_POWER = 2.0  # divide by the local variance: weights each region by its reliability
MARGIN = 0.25  # informed embedding lifts every bit to (1 + MARGIN) x its nominal statistic
SEGMENT = 24  # frames whose mean picture the informed embedding compensates together
REFINE = 1  # measure-and-correct passes of the informed embedding
MAX_CROP_SCALE = 1.4  # detector searches original/observed height ratios from 1 to this
SCALE_STEP = 0.008  # log step of that search: < 1 sample of drift across the working frame
CANDIDATES = 8  # scale candidates decoded per key
MIN_HEIGHT = 128


class TileMarkError(WatermarkError):
    """Embedding is impossible (frames too small, payload of the wrong size)."""


# -- message coding --------------------------------------------------------------------------


def crc24(data: bytes) -> int:
    """CRC-24/OPENPGP (RFC 4880)."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _parity(x: int) -> int:
    return bin(x).count("1") & 1


def conv_encode(bits: np.ndarray) -> np.ndarray:
    """Rate-1/2, K=7 convolutional code (133, 171 octal), terminated with K-1 zeros."""
    state, out = 0, []
    for b in [*bits.tolist(), *([0] * (CONSTRAINT - 1))]:
        state = ((state << 1) | int(b)) & ((1 << CONSTRAINT) - 1)
        out.extend(_parity(state & g) for g in GENERATORS)
    return np.array(out, np.int8)


@lru_cache(maxsize=1)
def _trellis() -> tuple[np.ndarray, np.ndarray]:
    n_states = 1 << (CONSTRAINT - 1)
    # For next state s' the register is s' + 64x, x being the bit that falls off; its predecessor
    # state is (s' >> 1) | (x << 5).
    pred = np.array([[(s >> 1) | (x << (CONSTRAINT - 2)) for x in (0, 1)] for s in range(n_states)])
    signs = np.array([[2.0 * _parity(r & g) - 1.0 for g in GENERATORS] for r in range(2 * n_states)])
    return pred, signs


def viterbi(soft: np.ndarray) -> np.ndarray:
    """Soft-decision decoding; soft[i] > 0 favours coded bit 1. Returns the message bits."""
    pred, signs = _trellis()
    n_states = pred.shape[0]
    steps = len(soft) // 2
    metric = np.full(n_states, -np.inf)
    metric[0] = 0.0
    decisions = np.zeros((steps, n_states), np.int8)
    full = np.arange(n_states)[:, None] + n_states * np.arange(2)[None, :]
    for t in range(steps):
        branch = signs @ soft[2 * t : 2 * t + 2]
        cand = metric[pred] + branch[full]
        choice = np.argmax(cand, axis=1)
        decisions[t] = choice
        metric = cand[np.arange(n_states), choice]
    state, bits = 0, []
    for t in range(steps - 1, -1, -1):
        bits.append(state & 1)
        state = pred[state, decisions[t, state]]
    return np.array(bits[::-1][: steps - (CONSTRAINT - 1)], np.uint8)


def message_bits(payload: bytes, key_id: int) -> np.ndarray:
    if len(payload) * 8 != PAYLOAD_BITS:
        raise TileMarkError(f"payload must be {PAYLOAD_BITS // 8} bytes, got {len(payload)}")
    body = payload + bytes([key_id])
    word = body + crc24(body).to_bytes(3, "big")
    return np.unpackbits(np.frombuffer(word, np.uint8))


def parse_message(bits: np.ndarray) -> tuple[bytes, int] | None:
    """(payload, key id) when the CRC matches, else None."""
    word = np.packbits(bits).tobytes()
    body, check = word[:-3], int.from_bytes(word[-3:], "big")
    if crc24(body) != check:
        return None
    return body[:-1], body[-1]


# -- the keyed pattern -----------------------------------------------------------------------


def _keyed_bytes(secret: bytes, label: bytes, n: int) -> bytes:
    """HMAC-SHA256 in counter mode: stable across numpy versions, unlike a seeded numpy RNG."""
    blocks = (n + 31) // 32
    stream = b"".join(
        hmac.new(secret, METHOD.encode() + b"/" + label + i.to_bytes(4, "big"), hashlib.sha256).digest()
        for i in range(blocks)
    )
    return stream[:n]


def _keyed_signs(secret: bytes, label: bytes, n: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(_keyed_bytes(secret, label, (n + 7) // 8), np.uint8))[:n]
    return (2.0 * bits - 1.0).astype(np.float32)


def _keyed_words(secret: bytes, label: bytes, n: int) -> np.ndarray:
    return np.frombuffer(_keyed_bytes(secret, label, 4 * n), dtype=">u4")


class KeyedLayout:
    """Everything the key decides: sync tile, which chips carry which coded bit, and signs."""

    def __init__(self, key: WatermarkKey) -> None:
        n = TILE_CHIPS * TILE_CHIPS
        self.key_id = key.key_id
        self.sync = _keyed_signs(key.secret, b"sync", n)
        # Which coded bit each chip carries: a keyed permutation (argsort of keyed 32-bit values).
        order = np.argsort(_keyed_words(key.secret, b"permutation", n), kind="stable")
        self.bit_of_chip = np.empty(n, np.int64)
        self.bit_of_chip[order] = np.arange(n) % CODED_BITS
        self.spread = _keyed_signs(key.secret, b"spread", n)
        self.scramble = (_keyed_signs(key.secret, b"scramble", CODED_BITS) > 0).astype(np.int8)
        self.chips_per_bit = np.bincount(self.bit_of_chip, minlength=CODED_BITS).astype(np.float32)
        self.nominal_bits = self.chips_per_bit * np.float32(DATA_AMPLITUDE)  # per unit pattern amplitude
        self.sync_template = _highpass_periodic(_tile_upsample(self.sync.reshape(TILE_CHIPS, TILE_CHIPS)))
        self.sync_spectrum = np.conj(np.fft.rfft2(self.sync_template))

    def coded_signs(self, payload: bytes) -> np.ndarray:
        """+-1 per coded bit, after keyed scrambling."""
        coded = conv_encode(message_bits(payload, self.key_id)) ^ self.scramble
        return 2.0 * coded.astype(np.float32) - 1.0

    def chips(self, signs: np.ndarray) -> np.ndarray:
        data = signs[self.bit_of_chip] * self.spread
        return (SYNC_WEIGHT * self.sync + data) * np.float32(DATA_AMPLITUDE)

    def bit_statistics(self, estimates: np.ndarray) -> tuple[float, np.ndarray]:
        """Sync amplitude and per-coded-bit soft values (before descrambling) from chip estimates."""
        sync = float(estimates @ self.sync) / estimates.size
        data = (estimates - sync * self.sync) * self.spread
        return sync, np.bincount(self.bit_of_chip, weights=data, minlength=CODED_BITS)


def _interp_matrix(n_px: int, period_px: float) -> np.ndarray:
    """Periodic bilinear interpolation from TILE_CHIPS chip values to n_px pixels."""
    u = (np.arange(n_px) + 0.5) * TILE_CHIPS / period_px - 0.5
    i0 = np.floor(u).astype(np.int64)
    frac = (u - i0).astype(np.float32)
    m = np.zeros((n_px, TILE_CHIPS), np.float32)
    np.add.at(m, (np.arange(n_px), i0 % TILE_CHIPS), 1 - frac)
    np.add.at(m, (np.arange(n_px), (i0 + 1) % TILE_CHIPS), frac)
    return m


@lru_cache(maxsize=1)
def _work_interp() -> np.ndarray:
    return _interp_matrix(WORK_PERIOD, WORK_PERIOD)


def _tile_upsample(chips: np.ndarray) -> np.ndarray:
    m = _work_interp()
    return m @ chips.astype(np.float32) @ m.T


def _highpass_periodic(tile: np.ndarray) -> np.ndarray:
    """`whiten`'s high-pass on a periodic tile, so the sync template matches what detection sees."""
    f = np.fft.fftfreq(tile.shape[0])
    lowpass = np.exp(-2 * (np.pi * HIGHPASS_SIGMA) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(tile) * (1 - lowpass))).astype(np.float32)


# -- detector front end (shared with the embedder) -------------------------------------------


def luma(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def work_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) of the working image for a frame of this size."""
    return max(1, round(width * WORK_HEIGHT / height)), WORK_HEIGHT


def whiten(image: np.ndarray) -> np.ndarray:
    """High-pass, then divide by the local variance (std ** NORM_POWER): busy regions, where the
    picture drowns the mark, count less; a brightness or contrast change only rescales the result."""
    image = image.astype(np.float32, copy=False)
    residual = image - cv2.GaussianBlur(image, (0, 0), HIGHPASS_SIGMA)
    spread = np.sqrt(cv2.GaussianBlur(residual * residual, (0, 0), NORM_SIGMA)) + 1.0
    return residual / spread**NORM_POWER


def fold(image: np.ndarray) -> np.ndarray:
    """Sum an image onto one tile period (zero padded), normalised by how often each cell was seen."""
    h, w = image.shape
    p = WORK_PERIOD
    ph, pw = -(-h // p) * p, -(-w // p) * p
    padded = np.zeros((ph, pw), np.float32)
    padded[:h, :w] = image
    total = padded.reshape(ph // p, p, pw // p, p).sum(axis=(0, 2))
    return total / np.sqrt(_coverage(h, w))


@lru_cache(maxsize=64)
def _coverage(h: int, w: int) -> np.ndarray:
    p = np.arange(WORK_PERIOD)
    rows = (p[:, None] < (h - np.arange(0, h, WORK_PERIOD))[None, :]).sum(axis=1)
    cols = (p[:, None] < (w - np.arange(0, w, WORK_PERIOD))[None, :]).sum(axis=1)
    return np.maximum(np.outer(rows, cols), 1).astype(np.float32)


def chip_estimates(folded: np.ndarray) -> np.ndarray:
    """Matched-filter estimate of every chip from an aligned folded tile."""
    m = _work_interp()
    return (m.T @ folded @ m).ravel()


# -- embedding and detection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowResult:
    payload: bytes | None
    key_id: int | None
    attempts: int  # decodes tried; each passes an unmarked window with probability 2^-32
    sync_score: float  # z-score of the best sync peak
    scale: float  # original/observed height ratio of the accepted candidate


class TileMark:
    """Embed and detect the keyed tile watermark. `keys[0]` embeds; every key in `keys` detects."""

    def __init__(
        self,
        keys: list[WatermarkKey],
        target_psnr: float = 40.5,
        window: int = 48,
        max_false_positive_probability: float = 1e-6,
    ):
        if not keys:
            raise TileMarkError("TileMark needs at least one key")
        ids = [k.key_id for k in keys]
        if len(set(ids)) != len(ids):
            raise TileMarkError(f"watermark key ids must be unique, got {ids}")
        self.keys = keys
        self.layouts = [KeyedLayout(k) for k in keys]
        self.target_psnr = target_psnr
        self.window = window
        self.max_false_positive_probability = max_false_positive_probability
        self.name = METHOD
        self.input_format = "gray"
        self.soft_binding_alg = SOFT_BINDING_ALG

    @property
    def key_id(self) -> int:
        return self.keys[0].key_id

    def embed(self, frames: np.ndarray, payload: bytes) -> np.ndarray:
        """Mark (T, H, W, 3) uint8 RGB frames; returns new frames at the target PSNR per frame."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise TileMarkError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
        h, w = frames.shape[1:3]
        if h < MIN_HEIGHT or w < MIN_HEIGHT // 2:
            raise TileMarkError(f"frames of {w}x{h} are too small to mark (height >= {MIN_HEIGHT})")
        layout = self.layouts[0]
        signs = layout.coded_signs(payload)
        base = layout.chips(signs)
        rows, cols = _interp_matrix(h, h / 2), _interp_matrix(w, h / 2)
        synth = lambda chips: rows @ chips.reshape(TILE_CHIPS, TILE_CHIPS) @ cols.T  # noqa: E731
        pattern = synth(base)
        size = work_size(h, w)
        rows_w, cols_w = _interp_matrix(size[1], size[1] / 2), _interp_matrix(size[0], size[1] / 2)
        synth_work = lambda chips: rows_w @ chips.reshape(TILE_CHIPS, TILE_CHIPS) @ cols_w.T  # noqa: E731
        pattern_work = synth_work(base)
        target_rms = 255.0 / 10 ** (self.target_psnr / 20)
        amp = target_rms / float(np.sqrt(np.mean(pattern * pattern)))
        work = np.stack([cv2.resize(luma(f), size, interpolation=cv2.INTER_AREA) for f in frames])
        out = np.empty_like(frames)
        for segment in _segments(len(frames)):
            # The detector whitens the mean of a window's frames, so the host that matters is the
            # segment's mean picture: moving content partly averages away and costs less to cancel.
            y = work[segment].astype(np.float32).mean(axis=0)
            host = chip_estimates(fold(whiten(y)))
            marked = chip_estimates(fold(whiten(y + pattern_work * amp)))
            gain = float((marked - host) @ base) / float(base @ base) / amp
            if not np.isfinite(gain) or gain <= 1e-6:
                raise TileMarkError("the picture did not respond to the watermark pattern")
            extra = _host_compensation(layout, signs, host, gain, MARGIN * gain * amp)
            for _ in range(REFINE):
                extra_w = synth_work(extra)
                scale = _base_scale(pattern_work, extra_w, target_rms)
                actual = chip_estimates(fold(whiten(y + scale * pattern_work + extra_w)))
                _, bits = layout.bit_statistics(actual)
                short = np.clip((1 + MARGIN) * gain * scale * layout.nominal_bits - bits * signs, 0, None)
                lift = (short / (gain * layout.chips_per_bit)) * signs
                extra = extra + lift[layout.bit_of_chip] * layout.spread
            extra_full = synth(extra)
            delta = pattern * _base_scale(pattern, extra_full, target_rms) + extra_full
            rms = float(np.sqrt(np.mean(delta * delta)))
            if rms > target_rms * 1.001:  # the picture alone asks for more than the budget
                delta *= target_rms / rms
            delta3 = cv2.merge([delta, delta, delta])
            for t in range(segment.start, segment.stop):
                out[t] = cv2.add(frames[t], delta3, dtype=cv2.CV_8U)
        return out

    def detect(self, frames: np.ndarray | Iterable[np.ndarray]) -> WatermarkReading:
        """Look for the mark of any configured key, window by window (`window` frames each).

        Frames may be RGB or grey, an array or any iterable (a decoder streaming frames: only the
        working-size luma of the current window is kept). Windows are read in order until one
        decodes. A detection is reported only when its false-positive probability (all decode
        attempts so far x 2^-32) is at most `max_false_positive_probability`.
        """
        budget = max(1, int(self.max_false_positive_probability * 2.0**32))
        attempts, frames_read, windows, best = 0, 0, 0, 0.0
        for mean, count in self._window_means(frames):
            frames_read += count
            windows += 1
            found = self.search_window(mean, budget - attempts)
            attempts += found.attempts
            best = max(best, found.sync_score)
            if found.payload is not None:
                return WatermarkReading(
                    True,
                    found.payload.hex(),
                    self.name,
                    found.key_id,
                    attempts * 2.0**-32,
                    frames_read,
                    {
                        "sync_z": round(found.sync_score, 2),
                        "scale": round(found.scale, 4),
                        "attempts": attempts,
                        "windows": windows,
                    },
                )
            if attempts >= budget:
                break
        return WatermarkReading(
            False,
            None,
            self.name,
            None,
            None,
            frames_read,
            {"sync_z": round(best, 2), "attempts": attempts, "windows": windows},
        )

    def _window_means(self, frames: np.ndarray | Iterable[np.ndarray]):
        """Yield (mean working-size luma, frames) per window; a short last window is kept if >= 8."""
        total, count, size, yielded = None, 0, None, 0
        for frame in frames:
            if size is None:
                h, w = frame.shape[:2]
                if h < MIN_HEIGHT // 2 or w < MIN_HEIGHT // 4:
                    return
                size = work_size(h, w)
            y = cv2.resize(luma(frame), size, interpolation=cv2.INTER_AREA).astype(np.float32)
            total = y if total is None else total + y
            count += 1
            if count == self.window:
                yield total / count, count
                total, count, yielded = None, 0, yielded + 1
        if total is not None and (count >= 8 or not yielded):
            yield total / count, count

    def search_window(self, mean: np.ndarray, max_attempts: int) -> WindowResult:
        """Scale search, sync correlation and decoding of one window's mean working-size luma.

        `mean` is what `detect` builds: the frames' luma resized to height WORK_HEIGHT, averaged.
        At most `max_attempts` candidates are decoded. bench/watermark_fpr.py calls this directly.
        """
        if float(mean.std()) < 1e-3 or max_attempts <= 0:
            return WindowResult(None, None, 0, 0.0, 1.0)
        candidates, nominal = [], []  # (z, key index, scale, folded tile, peak offset)
        scales = np.exp(np.arange(0.0, np.log(MAX_CROP_SCALE), SCALE_STEP))
        for s in scales:
            # Bring the picture to the embedder's scale first, so whitening sees what it saw.
            rh, rw = round(mean.shape[0] / s), round(mean.shape[1] / s)
            scaled = mean if s == 1.0 else cv2.resize(mean, (rw, rh), interpolation=cv2.INTER_AREA)
            folded = fold(whiten(scaled))
            spectrum = np.fft.rfft2(folded)
            for k, layout in enumerate(self.layouts):
                corr = np.fft.irfft2(spectrum * layout.sync_spectrum, s=folded.shape)
                peak = int(np.argmax(corr))
                z = float(corr.flat[peak] / (corr.std() + 1e-12))
                candidates.append((z, k, float(s), folded, _subsample_peak(corr, peak)))
                if s == 1.0:  # the untouched geometry (no crop, tile origin at the top left) is tried first
                    nominal.append((float(corr[0, 0] / (corr.std() + 1e-12)), k, 1.0, folded, (0.0, 0.0)))
        best_z = max(c[0] for c in candidates)
        best_per_key: list[list] = [[] for _ in self.layouts]
        for cand in sorted(candidates, key=lambda c: -c[0]):
            best_per_key[cand[1]].append(cand)
        ordered = nominal + sorted(
            (c for per_key in best_per_key for c in per_key[:CANDIDATES]), key=lambda c: -c[0]
        )
        attempts = 0
        for z, k, s, folded, (dy, dx) in ordered[:max_attempts]:
            attempts += 1
            layout = self.layouts[k]
            estimates = chip_estimates(_shift_periodic(folded, -dy, -dx))
            _, soft = layout.bit_statistics(estimates)
            soft = soft * (1.0 - 2.0 * layout.scramble)
            parsed = parse_message(viterbi(soft / (np.abs(soft).mean() + 1e-12)))
            if parsed is not None and parsed[1] == layout.key_id:
                return WindowResult(parsed[0], layout.key_id, attempts, z, s)
        return WindowResult(None, None, attempts, best_z, 1.0)


def _subsample_peak(corr: np.ndarray, peak: int) -> tuple[float, float]:
    """Peak position refined by a parabola through its neighbours on each axis (periodic)."""
    n, m = corr.shape
    y, x = np.unravel_index(peak, corr.shape)
    c = corr[y, x]

    def vertex(a: float, b: float) -> float:
        d = a - 2 * c + b
        return 0.0 if d >= 0 else float(np.clip(0.5 * (a - b) / d, -0.5, 0.5))

    return y + vertex(corr[(y - 1) % n, x], corr[(y + 1) % n, x]), x + vertex(
        corr[y, (x - 1) % m], corr[y, (x + 1) % m]
    )


def _shift_periodic(tile: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """np.roll by a fractional number of samples (Fourier phase ramp)."""
    fy = np.fft.fftfreq(tile.shape[0])[:, None]
    fx = np.fft.rfftfreq(tile.shape[1])[None, :]
    ramp = np.exp(-2j * np.pi * (fy * dy + fx * dx))
    return np.fft.irfft2(np.fft.rfft2(tile) * ramp, s=tile.shape).astype(np.float32)


def _segments(count: int) -> list[slice]:
    """Consecutive runs of SEGMENT frames; a short tail joins the run before it."""
    starts = list(range(0, count, SEGMENT))
    if len(starts) > 1 and count - starts[-1] < SEGMENT // 2:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], count], strict=True)]


def _host_compensation(
    layout: KeyedLayout, signs: np.ndarray, host: np.ndarray, gain: float, margin: float = 0.0
) -> np.ndarray:
    """Extra chip amplitudes that cancel what the picture itself subtracts from each statistic.

    `host` is the detector's chip estimates of the unmarked frame. Where the picture's projection
    on a coded bit (or on the sync) has the wrong sign, the bit's chips get exactly the amplitude
    that cancels it; where the picture helps, nothing is added.
    """
    host_sync, host_bits = layout.bit_statistics(host)
    # How far the picture pulls each bit below `margin` times its nominal statistic.
    against = np.clip(margin * layout.nominal_bits - host_bits * signs, 0, None)
    per_chip = against / (gain * layout.chips_per_bit)
    sync_lift = max(0.0, -host_sync) / gain
    chips = (per_chip * signs)[layout.bit_of_chip] * layout.spread + sync_lift * layout.sync
    return chips.astype(np.float32)


def _base_scale(pattern: np.ndarray, extra: np.ndarray, target_rms: float) -> float:
    """Largest a >= 0 with rms(a * pattern + extra) <= target_rms (0 if extra alone exceeds it)."""
    n = pattern.size
    pp, pe, ee = (
        float(np.vdot(pattern, pattern)),
        float(np.vdot(pattern, extra)),
        float(np.vdot(extra, extra)),
    )
    c = ee - n * target_rms**2
    disc = pe * pe - pp * c
    if disc < 0:
        return 0.0
    return max(0.0, (-pe + np.sqrt(disc)) / pp)
