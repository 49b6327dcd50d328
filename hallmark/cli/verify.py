"""`hallmark verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hallmark.cli.common import audit_store, fail, load_settings

# verify's exit codes (its docstring, the command's help, documents them); 1 is an unreadable file.
EXIT_ALTERED = 3  # made by this generator but altered since signing
EXIT_UNTRUSTED = 4  # no trusted provenance


def verify(
    file: Annotated[Path, typer.Argument(help="The video to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    resolver: Annotated[
        str | None,
        typer.Option(
            help="A Soft Binding Resolution API (e.g. https://hallmark.example/v1) to ask for the "
            "original manifest of a stripped or re-encoded file. Default: the local store."
        ),
    ] = None,
    fetch_remote_manifest: Annotated[
        bool,
        typer.Option(
            help="Fetch the manifest from the URL a file names for it (a remote manifest). Off by "
            "default: the file chooses the URL, so this makes a request a stranger chose."
        ),
    ] = False,
) -> None:
    """Check a video's C2PA manifest and invisible watermark, recover the original manifest of a
    stripped or re-encoded copy, and find its audit record.

    Exit codes: 0 authentic (trusted manifest signed with this generator's key, its watermark in
    the pictures, file unaltered); 3 made by this generator but altered
    since signing (re-encoded, edited or stripped); 4 no trusted provenance (no manifest or
    watermark, untrusted signer, or a manifest that does not validate); 1 unreadable file.
    """
    from hallmark.compose import build_watermark, signing_identities, trust_anchors_pem
    from provenance import VideoError
    from provenance import verify as verify_file
    from provenance.resolve import FirstMatch, HttpResolver, StoreResolver

    settings = load_settings()
    if not file.is_file():
        raise fail(f"{file}: no such file")
    resolver_url = resolver or settings.resolver_url
    try:
        watermark, store = build_watermark(settings), audit_store(settings)
        # The local store first; a remote service for what it does not know.
        resolvers = [StoreResolver(store, watermark)] + ([HttpResolver(resolver_url)] if resolver_url else [])
        report = verify_file(
            file,
            trust_anchors_pem(settings),
            watermark,
            store,
            resolver=FirstMatch(resolvers),
            signers=signing_identities(settings),
            fetch_remote=fetch_remote_manifest,
            max_pixels=settings.max_video_pixels,
        )
    except (VideoError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        out = Console()
        out.print(f"[bold]{file}[/] sha256 {report.sha256}")
        for line in report.summary():
            out.print(line, markup=False, highlight=False)
    c = report.conclusion
    if c.made_by_generator and c.altered is False:
        return
    raise typer.Exit(EXIT_ALTERED if c.made_by_generator else EXIT_UNTRUSTED)
