"""Signing keys and certificates.

On first run a development chain is created in the data directory: a root CA (the default trust
anchor) and a signing certificate issued by it with the extensions c2pa-rs requires of a leaf
(KeyUsage digitalSignature, EKU emailProtection, Authority Key Identifier). In production, point
settings at a chain issued by a CA on the C2PA trust list and at its key; nothing else changes.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Signs the bytes it is given with the signing certificate's key: a local key, or a KMS or HSM.
SignCallback = Callable[[bytes], bytes]

# The EKUs c2pa-rs accepts for a claim signer (C2PA 2.x, trust model), besides private ones.
C2PA_EKUS = {
    ExtendedKeyUsageOID.EMAIL_PROTECTION,
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"),  # id-kp-documentSigning
    ExtendedKeyUsageOID.TIME_STAMPING,
}  # and private (enterprise) EKUs, 1.3.6.1.4.1.*


class CertificateError(RuntimeError):
    """A signing certificate chain or key that cannot be used."""


@dataclass(frozen=True)
class SigningMaterial:
    """PEM files for one signer: the chain (leaf first), its private key, and the trust anchors."""

    chain_path: Path
    key_path: Path | None  # None: the key lives in a KMS or HSM, reached through a sign callback
    trust_anchors_path: Path

    def chain_pem(self) -> bytes:
        return self.chain_path.read_bytes()

    def key_pem(self) -> bytes:
        if self.key_path is None:
            raise CertificateError(f"{self.chain_path}: no local private key (a signing callback holds it)")
        return self.key_path.read_bytes()

    def trust_anchors_pem(self) -> bytes:
        return self.trust_anchors_path.read_bytes()


DEV_CHAIN = "dev-signer-chain.pem"
DEV_KEY = "dev-signer-key.pem"
DEV_ROOT = "dev-root-ca.pem"
DEV_ROOT_KEY = "dev-root-ca-key.pem"
RETIRED_DIR = "retired"


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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    _write_private(directory / DEV_ROOT_KEY, _key_pem(root_key))
    material.trust_anchors_path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    _issue_dev_signer(directory, root, root_key, now, now + dt.timedelta(days=365))
    return material


def issue_signer(
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.EMAIL_PROTECTION,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A C2PA signing certificate issued by `root`, with the extensions c2pa-rs requires of a leaf."""
    organisation = root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
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
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return leaf, leaf_key


def _issue_dev_signer(
    directory: Path,
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    leaf, leaf_key = issue_signer(root, root_key, not_before - dt.timedelta(minutes=5), not_after)
    pem = serialization.Encoding.PEM
    _write_private(directory / DEV_KEY, _key_pem(leaf_key))
    (directory / DEV_CHAIN).write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    return leaf


def rotate_dev_signer(directory: Path, days: int = 365) -> x509.Certificate:
    """Issue a new development signing certificate and key; the old certificate is kept as retired.

    Files signed with the old certificate still verify (both chain to the same development root),
    and audit checkpoints signed with it still verify against the retired copy.
    """
    material = ensure_dev_chain(directory)
    root = x509.load_pem_x509_certificate((directory / DEV_ROOT).read_bytes())
    root_key = serialization.load_pem_private_key((directory / DEV_ROOT_KEY).read_bytes(), password=None)
    old = x509.load_pem_x509_certificates(material.chain_pem())[0]
    retired = directory / RETIRED_DIR
    retired.mkdir(exist_ok=True)
    (retired / f"signer-{old.serial_number:x}.pem").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    now = dt.datetime.now(dt.UTC)
    return _issue_dev_signer(directory, root, root_key, now, now + dt.timedelta(days=days))


def retired_dev_signers(directory: Path) -> list[x509.Certificate]:
    """Development signing certificates replaced by `rotate_dev_signer`, oldest first."""
    certs = [
        x509.load_pem_x509_certificate(p.read_bytes()) for p in (directory / RETIRED_DIR).glob("signer-*.pem")
    ]
    return sorted(certs, key=lambda c: c.not_valid_before_utc)


def c2pa_algorithm(certificate: x509.Certificate) -> str:
    """The C2PA signing algorithm for the certificate's key: es256/384/512, ps256 or ed25519."""
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in names:
            raise CertificateError(f"unsupported elliptic curve {key.curve.name} for C2PA signing")
        return names[key.curve.name]
    if isinstance(key, rsa.RSAPublicKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise CertificateError(f"unsupported key type {type(key).__name__} for C2PA signing")


def local_sign_callback(key_pem: bytes, source: str = "key") -> SignCallback:
    """Sign with a PEM private key held in this process (what a KMS or HSM callback replaces)."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{source}: not a usable PEM private key: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]
        return lambda data: key.sign(data, ec.ECDSA(digest))
    if isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return lambda data: key.sign(data, pss, hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    raise CertificateError(f"{source}: unsupported key type {type(key).__name__}")


def verify_signature(certificate: x509.Certificate, signature: bytes, data: bytes) -> bool:
    """Check a signature made by a sign callback (ECDSA as DER or as raw r||s) with the certificate."""
    key = certificate.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(signature) == 2 * size:  # raw r||s, as COSE carries it
                r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
                signature = encode_dss_signature(r, s)
            digest = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]
            key.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(
                signature,
                data,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def check_chain(material: SigningMaterial, sign: SignCallback | None = None) -> x509.Certificate:
    """Validate the signing chain before use; raise CertificateError saying what is wrong.

    Checks that every certificate is valid now and issued by the next one, that the last one is
    a configured trust anchor or issued by one, that the leaf may sign C2PA claims (KeyUsage
    digitalSignature, a C2PA-accepted EKU), and that the key (a local file, or `sign`, a KMS or
    HSM callback) is the leaf's: a probe signature must verify with the leaf's public key.
    """
    where = str(material.chain_path)
    try:
        certs = x509.load_pem_x509_certificates(material.chain_pem())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"{where}: not a PEM certificate chain: {exc}") from exc
    leaf = certs[0]
    now = dt.datetime.now(dt.UTC)
    for position, cert in enumerate(certs):
        name = "signing certificate" if position == 0 else f"certificate {position + 1} of the chain"
        if now > cert.not_valid_after_utc:
            raise CertificateError(
                f"{where}: {name} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC "
                f"({cert.subject.rfc4514_string()})"
            )
        if now < cert.not_valid_before_utc:
            raise CertificateError(
                f"{where}: {name} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            )
    for child, parent in zip(certs, certs[1:], strict=False):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CertificateError(
                f"{where}: the chain is out of order or broken: {child.subject.rfc4514_string()} is not "
                f"issued by {parent.subject.rfc4514_string()}"
            ) from exc
    _check_leaf_usage(leaf, where)
    _check_anchored(certs[-1], material, where)
    if sign is None:
        if material.key_path is None:
            raise CertificateError(f"{where}: no private key and no signing callback configured")
        try:
            sign = local_sign_callback(material.key_pem(), str(material.key_path))
        except OSError as exc:
            raise CertificateError(f"{material.key_path}: cannot read the private key: {exc}") from exc
    probe = os.urandom(32)
    try:
        signature = sign(probe)
    except Exception as exc:  # a KMS or HSM callback can fail in any way: say so at start-up
        raise CertificateError(f"the signing callback failed on a probe signature: {exc}") from exc
    if not isinstance(signature, bytes) or not verify_signature(leaf, signature, probe):
        key = material.key_path or "the signing callback"
        raise CertificateError(f"{key}: private key does not match the signing certificate in {where}")
    return leaf


def _check_leaf_usage(leaf: x509.Certificate, where: str) -> None:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.digital_signature:
        raise CertificateError(f"{where}: signing certificate's KeyUsage lacks digitalSignature")
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CertificateError(f"{where}: signing certificate has no ExtendedKeyUsage extension") from exc
    if not any(oid in C2PA_EKUS or oid.dotted_string.startswith("1.3.6.1.4.1.") for oid in eku):
        names = ", ".join(getattr(oid, "_name", oid.dotted_string) for oid in eku)
        raise CertificateError(
            f"{where}: signing certificate's ExtendedKeyUsage ({names}) does not allow C2PA signing "
            "(needs emailProtection, documentSigning, timeStamping or a private C2PA EKU)"
        )


def _check_anchored(top: x509.Certificate, material: SigningMaterial, where: str) -> None:
    try:
        anchors = x509.load_pem_x509_certificates(material.trust_anchors_pem())
    except (OSError, ValueError) as exc:
        raise CertificateError(
            f"{material.trust_anchors_path}: not a PEM bundle of trust anchors: {exc}"
        ) from exc
    for anchor in anchors:
        if anchor == top:
            return
        try:
            top.verify_directly_issued_by(anchor)
            return
        except (ValueError, TypeError, InvalidSignature):
            continue
    raise CertificateError(
        f"{where}: the chain does not lead to any trust anchor in {material.trust_anchors_path}; "
        "signed files would not verify as trusted"
    )


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
