"""Mutations of a signed MP4, for testing that a verifier answers every malformed file clearly
(tests/test_verify_attacks.py, bench/verify_attacks.py). Each mutation is one of the ways files
break or are broken on purpose: flipped bits (anywhere, or inside the C2PA manifest box),
truncation, a box size that lies, and a box that appears twice."""

from __future__ import annotations

import random

MUTATIONS = ("flip", "flip_manifest", "truncate", "box_size", "duplicate_box")

# Box types whose headers are worth corrupting: the MP4 structure and the JUMBF manifest store.
_BOX_TYPES = (
    b"ftyp",
    b"moov",
    b"trak",
    b"mdia",
    b"minf",
    b"stbl",
    b"mdat",
    b"uuid",
    b"jumb",
    b"jumd",
    b"cbor",
)


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of `data`: (its kind, the mutated bytes)."""
    kind = rng.choice(MUTATIONS)
    out = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 16)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == "flip_manifest":
        start = max(out.find(b"jumb") - 4, 0)
        end = _box_end(out, start) if start else len(out)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        out = out[: rng.randrange(len(out))]
    elif kind == "box_size":
        at = _some_box(out, rng)
        out[at : at + 4] = rng.choice(
            [b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", b"\x00\x00\x00\x07", b"\xff\xff\xff\xff"]
            + [rng.randrange(1 << 32).to_bytes(4, "big")]
        )
    else:
        at = _some_box(out, rng)
        end = _box_end(out, at)
        out = out[:end] + out[at:end] + out[end:]
    return kind, bytes(out)


def _some_box(data: bytearray, rng: random.Random) -> int:
    """The offset of a random box header (its size field) among the known box types."""
    found = [i - 4 for t in _BOX_TYPES for i in _all(data, t) if i >= 4]
    return rng.choice(found) if found else 0


def _all(data: bytearray, needle: bytes) -> list[int]:
    found, at = [], data.find(needle)
    while at >= 0 and len(found) < 64:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def _box_end(data: bytearray, at: int) -> int:
    size = int.from_bytes(data[at : at + 4], "big")
    return min(at + size, len(data)) if size >= 8 else len(data)
