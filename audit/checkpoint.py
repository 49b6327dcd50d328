"""Signing and checking checkpoints of the chain head with the deployment's key.

The key and certificate are the deployment's signing material (in development, the C2PA chain
created on first run). Verification needs only the certificate, so a copy of the checkpoints kept
elsewhere can be checked by anyone holding it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


@dataclass(frozen=True)
class CheckpointKey:
    """The certificate checkpoints are verified against, and the private key when this side signs."""

    certificate: x509.Certificate
    private_key: object | None = None
    # Or a callback that signs with the key where it lives (KMS, HSM); ECDSA as DER or raw r||s.
    sign_callback: Callable[[bytes], bytes] | None = None

    @classmethod
    def from_files(cls, chain_pem: Path, key_pem: Path | None = None) -> CheckpointKey:
        """`chain_pem`: the signing certificate first (a chain file is fine); `key_pem`: its key."""
        certificate = x509.load_pem_x509_certificates(chain_pem.read_bytes())[0]
        private_key = None
        if key_pem is not None:
            private_key = serialization.load_pem_private_key(key_pem.read_bytes(), password=None)
            if private_key.public_key().public_bytes(*_SPKI) != certificate.public_key().public_bytes(*_SPKI):
                raise ValueError(f"{key_pem} is not the key of the certificate in {chain_pem}")
        return cls(certificate, private_key)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()

    @property
    def algorithm(self) -> str:
        key = self.certificate.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            return f"ecdsa-{_ec_digest(key).name}"
        if isinstance(key, ed25519.Ed25519PublicKey):
            return "ed25519"
        if isinstance(key, rsa.RSAPublicKey):
            return "rsa-pss-sha256"
        raise ValueError(f"unsupported checkpoint key type {type(key).__name__}")

    def sign(self, message: bytes) -> str:
        if self.sign_callback is not None:
            signature = self.sign_callback(message)
            public = self.certificate.public_key()
            if isinstance(public, ec.EllipticCurvePublicKey):
                size = (public.curve.key_size + 7) // 8
                if len(signature) == 2 * size:
                    signature = encode_dss_signature(
                        int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
                    )
            return base64.b64encode(signature).decode()
        if self.private_key is None:
            raise ValueError("this checkpoint key has no private key: it can only verify")
        key = self.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            signature = key.sign(message, ec.ECDSA(_ec_digest(key)))
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            signature = key.sign(message)
        elif isinstance(key, rsa.RSAPrivateKey):
            signature = key.sign(message, _PSS, hashes.SHA256())
        else:
            raise ValueError(f"unsupported checkpoint key type {type(key).__name__}")
        return base64.b64encode(signature).decode()

    def verify(self, message: bytes, signature_b64: str) -> bool:
        key = self.certificate.public_key()
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, message, ec.ECDSA(_ec_digest(key)))
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, message, _PSS, hashes.SHA256())
            else:
                return False
        except (InvalidSignature, ValueError):
            return False
        return True


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _ec_digest(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    """The hash that goes with the curve, as C2PA's ES256/ES384/ES512 (and KMS signers) use it."""
    return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
