"""`hallmark certs`: C2PA signing certificates."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from hallmark.cli.common import fail, load_settings

certs_app = typer.Typer(help="C2PA signing certificates.", no_args_is_help=True)


@certs_app.command("check")
def certs_check() -> None:
    """Check the signing chain as generation does at start-up: validity, chain, EKU, key, anchors."""
    from hallmark.compose import build_signer
    from provenance import CertificateError

    try:
        signer = build_signer(load_settings())
    except (CertificateError, ValueError, OSError) as exc:
        raise fail(str(exc)) from exc
    Console().print(f"[green]usable[/]: {signer.certificate_subject}")


@certs_app.command("list")
def certs_list() -> None:
    """The signing certificate in use and the retired ones whose checkpoints and files still verify."""
    from hallmark.compose import retired_signers, signing_material
    from provenance import CertificateError

    settings = load_settings()
    try:
        material = signing_material(settings)
        active = _load_certs(material.chain_path)[0]
        retired = retired_signers(settings)
    except (CertificateError, ValueError, OSError) as exc:
        raise fail(str(exc)) from exc
    out = Console()
    out.print(f"trust anchors {material.trust_anchors_path}")
    for role, cert in [("signing", active)] + [("retired", c) for c in retired]:
        out.print(
            f"  {role:<8} {cert.subject.rfc4514_string()}  serial {cert.serial_number:x}  valid "
            f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
        )


@certs_app.command("rotate")
def certs_rotate() -> None:
    """Issue a new development signing certificate; the old one is kept as retired.

    Files signed before still verify (same development root), and so do audit checkpoints. For a
    production chain, point HALLMARK_SIGNING_CHAIN and _KEY at the new one and add the old
    certificate to HALLMARK_RETIRED_SIGNING_CERTS."""
    from provenance import rotate_dev_signer

    settings = load_settings()
    if settings.signing_chain is not None:
        raise fail(
            "HALLMARK_SIGNING_CHAIN is configured: rotate it with your CA, then add the old "
            "certificate to HALLMARK_RETIRED_SIGNING_CERTS"
        )
    leaf = rotate_dev_signer(settings.certs_dir)
    Console().print(
        f"[green]new signing certificate[/] serial {leaf.serial_number:x} in {settings.certs_dir}"
    )


def _load_certs(path: Path):
    from cryptography import x509

    return x509.load_pem_x509_certificates(path.read_bytes())
