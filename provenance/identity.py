"""Who signed a manifest: the signing certificate inside its COSE signature, and its key's pin.

c2pa-rs reports a signer's names, not its certificate, and names are what any certificate
authority can write. "Made by this generator" needs the key: this module reads the manifest
store (JUMBF, ISO 19566-5) to the active manifest's `c2pa.signature` box, decodes the COSE_Sign1
structure (RFC 9052) and returns the leaf of its `x5chain` (header label 33). A pin is the
SHA-256 of the certificate's SubjectPublicKeyInfo, as HTTP public-key pinning (RFC 7469) and
Certificate Transparency use it: it stays the same when the certificate is re-issued for the
same key.

Everything here reads attacker-controlled bytes: every length is bounds-checked, nesting is
and any malformed input gives None, never an exception.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization

# The MP4 'uuid' box that carries a C2PA manifest store (C2PA 2.x, "Embedding manifests into BMFF").
C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
X5CHAIN = 33  # COSE header label
_MAX_BOXES = 10_000


def spki_sha256(certificate: x509.Certificate) -> str:
    """The pin of a certificate's key: hex SHA-256 of its DER SubjectPublicKeyInfo."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def signer_pin(store: bytes | None, label: str | None) -> str | None:
    """The pin of the key that signed manifest `label` of `store`; None if it cannot be read."""
    if not store or not label:
        return None
    certificate = signer_certificate(store, label)
    try:
        return spki_sha256(certificate) if certificate is not None else None
    except Exception:  # a key that does not parse (cryptography raises several kinds): no pin
        return None


def embedded_store(path: Path) -> bytes | None:
    """The manifest store embedded in an MP4 (its C2PA 'uuid' box), or None."""
    try:
        with path.open("rb") as f:
            data_size = path.stat().st_size
            offset, seen = 0, 0
            while offset + 8 <= data_size and seen < _MAX_BOXES:
                seen += 1
                f.seek(offset)
                header = f.read(16)
                size, kind, header_size = _box_header(header, offset, data_size)
                if size is None:
                    return None
                if kind == b"uuid":
                    f.seek(offset + header_size)
                    body = f.read(min(size - header_size, 64 << 20))
                    if body[:16] == C2PA_UUID:
                        return _store_from_uuid_body(body[16:])
                offset += size
    except OSError:
        return None
    return None


def signer_certificate(store: bytes, label: str) -> x509.Certificate | None:
    """The leaf certificate that signed manifest `label` of `store`, or None if it cannot be read."""
    try:
        for store_label, start, end in _superboxes(store, 0, len(store)):
            if store_label != "c2pa":
                continue
            for manifest_label, m_start, m_end in _superboxes(store, start, end):
                if manifest_label != label:
                    continue
                for box_label, b_start, b_end in _superboxes(store, m_start, m_end):
                    if box_label == "c2pa.signature":
                        return _leaf(_content(store, b_start, b_end, b"cbor"))
    except Exception:  # CBOR, DER and X.509 parsers raise many kinds on hostile bytes: no signer
        return None
    return None


def _store_from_uuid_body(body: bytes) -> bytes | None:
    """After the UUID: version and flags (4), a NUL-terminated purpose, then for "manifest" an
    8-byte offset to a Merkle box, then the JUMBF store."""
    if len(body) < 5:
        return None
    end = body.find(b"\x00", 4)
    if end < 0 or body[4:end] != b"manifest":
        return None
    return body[end + 1 + 8 :] or None


def _box_header(header: bytes, offset: int, limit: int) -> tuple[int | None, bytes, int]:
    """(size, type, header size) of an ISO BMFF / JUMBF box; size None when malformed."""
    if len(header) < 8:
        return None, b"", 0
    size, kind, header_size = int.from_bytes(header[:4], "big"), header[4:8], 8
    if size == 1:
        if len(header) < 16:
            return None, kind, 0
        size, header_size = int.from_bytes(header[8:16], "big"), 16
    elif size == 0:
        size = limit - offset
    if size < header_size or offset + size > limit:
        return None, kind, 0
    return size, kind, header_size


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, content start, content end) of each box in data[start:end]; ValueError if malformed."""
    offset, count = start, 0
    while offset < end:
        count += 1
        if count > _MAX_BOXES:
            raise ValueError("too many boxes")
        size, kind, header_size = _box_header(data[offset : offset + 16], offset, end)
        if size is None:
            raise ValueError(f"malformed box at {offset}")
        yield kind, offset + header_size, offset + size
        offset += size


def _superboxes(data: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    """The JUMBF superboxes ('jumb') directly in data[start:end], each as (label, start, end) of
    its content after its description box."""
    found = []
    for kind, content_start, content_end in _boxes(data, start, end):
        if kind != b"jumb":
            continue
        first = next(_boxes(data, content_start, content_end), None)
        if first is None or first[0] != b"jumd":
            raise ValueError("a JUMBF superbox without its description box")
        found.append((_label(data, first[1], first[2]), first[2], content_end))
    return found


def _label(data: bytes, start: int, end: int) -> str:
    """A description box: a 16-byte type UUID, a toggles byte, then the label if toggles say so."""
    if end - start < 17 or not data[start + 16] & 0x02:
        return ""
    stop = data.find(b"\x00", start + 17, end)
    if stop < 0:
        raise ValueError("unterminated JUMBF label")
    return data[start + 17 : stop].decode("utf-8")


def _content(data: bytes, start: int, end: int, kind: bytes) -> bytes:
    for child_kind, content_start, content_end in _boxes(data, start, end):
        if child_kind == kind:
            return data[content_start:content_end]
    raise ValueError(f"no {kind!r} box")


def _leaf(cose: bytes) -> x509.Certificate | None:
    """The first certificate of a COSE_Sign1's x5chain (protected header first, as C2PA 2.x puts it)."""
    message = cbor2.loads(cose)
    if isinstance(message, cbor2.CBORTag):
        message = message.value
    if not isinstance(message, list | tuple) or len(message) != 4:
        return None
    protected = cbor2.loads(message[0]) if message[0] else {}
    unprotected = message[1] if isinstance(message[1], dict) else {}
    chain = (protected if isinstance(protected, dict) else {}).get(X5CHAIN, unprotected.get(X5CHAIN))
    first = chain[0] if isinstance(chain, list | tuple) and chain else chain
    if not isinstance(first, bytes):
        return None
    return x509.load_der_x509_certificate(first)
