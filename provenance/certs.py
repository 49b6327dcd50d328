"""Signing keys and certificates.

On first run a development chain is created in the data directory: a root CA (the default trust
anchor) and a signing certificate issued by it with the extensions c2pa-rs requires of a leaf
(KeyUsage digitalSignature, EKU emailProtection, Authority Key Identifier). In production, point
settings at a chain issued by a CA on the C2PA trust list and at its key; nothing else changes.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class CertificateError(RuntimeError):
    """A signing certificate chain or key that cannot be used."""


@dataclass(frozen=True)
class SigningMaterial:
    """PEM files for one signer: the chain (leaf first), its private key, and the trust anchors."""

    chain_path: Path
    key_path: Path
    trust_anchors_path: Path

    def chain_pem(self) -> bytes:
        return self.chain_path.read_bytes()

    def key_pem(self) -> bytes:
        return self.key_path.read_bytes()

    def trust_anchors_pem(self) -> bytes:
        return self.trust_anchors_path.read_bytes()


DEV_CHAIN = "dev-signer-chain.pem"
DEV_KEY = "dev-signer-key.pem"
DEV_ROOT = "dev-root-ca.pem"
DEV_ROOT_KEY = "dev-root-ca-key.pem"


def ensure_dev_chain(directory: Path, organisation: str = "Hallmark development") -> SigningMaterial:
    """Create the development root CA and signing certificate in `directory` unless present."""
    directory.mkdir(parents=True, exist_ok=True)
    material = SigningMaterial(directory / DEV_CHAIN, directory / DEV_KEY, directory / DEV_ROOT)
    if all(p.exists() for p in (material.chain_path, material.key_path, material.trust_anchors_path)):
        return material

    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} root CA"),
        ]
    )
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(root_ski, critical=False)
        .sign(root_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} C2PA signer"),
                ]
            )
        )
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    _write_private(directory / DEV_ROOT_KEY, _key_pem(root_key))
    _write_private(material.key_path, _key_pem(leaf_key))
    material.trust_anchors_path.write_bytes(root.public_bytes(pem))
    material.chain_path.write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    return material


def check_chain(material: SigningMaterial) -> x509.Certificate:
    """Validate the signing chain before use; raise CertificateError saying what is wrong."""
    try:
        certs = x509.load_pem_x509_certificates(material.chain_pem())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"{material.chain_path}: not a PEM certificate chain: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(material.key_pem(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CertificateError(f"{material.key_path}: not a usable PEM private key: {exc}") from exc
    leaf = certs[0]
    now = dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise CertificateError(
            f"{material.chain_path}: signing certificate is not valid now "
            f"(valid {leaf.not_valid_before_utc:%Y-%m-%d} to {leaf.not_valid_after_utc:%Y-%m-%d})"
        )
    pub = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_pub = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if pub != key_pub:
        raise CertificateError(
            f"{material.key_path}: private key does not match the signing certificate "
            f"in {material.chain_path}"
        )
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CertificateError(
            f"{material.chain_path}: signing certificate has no ExtendedKeyUsage extension"
        ) from exc
    if ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku and not any(
        oid.dotted_string.startswith("1.3.6.1.4.1.") or oid == ExtendedKeyUsageOID.CODE_SIGNING for oid in eku
    ):
        raise CertificateError(
            f"{material.chain_path}: signing certificate's ExtendedKeyUsage does not allow "
            "C2PA signing (needs emailProtection or a C2PA signing EKU)"
        )
    return leaf


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
