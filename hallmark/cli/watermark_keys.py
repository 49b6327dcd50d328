"""`hallmark watermark-keys`: TileMark watermark keys."""

from __future__ import annotations

import typer
from rich.console import Console

from hallmark.cli.common import fail, load_settings

watermark_keys_app = typer.Typer(
    help="TileMark watermark keys (secrets are never printed).", no_args_is_help=True
)


@watermark_keys_app.command("list")
def watermark_keys_list() -> None:
    """Show the key file and each key's id and role (the first active key embeds)."""
    from hallmark.compose import watermark_keys
    from provenance import WatermarkError

    settings = load_settings()
    path = settings.watermark_keys_path
    try:
        keys = watermark_keys(settings)
    except (WatermarkError, ValueError) as exc:
        raise fail(str(exc)) from exc
    out = Console()
    out.print(f"watermark keys in {path}")
    for n, key in enumerate(keys):
        out.print(f"  key id {key.key_id}: " + ("embeds and detects" if n == 0 else "detects only (retired)"))


@watermark_keys_app.command("rotate")
def watermark_keys_rotate() -> None:
    """Add a new embedding key and retire the others; videos marked with them still verify."""
    from hallmark.compose import watermark_keys
    from provenance import WatermarkError, rotate_watermark_keys

    settings = load_settings()
    path = settings.watermark_keys_path
    try:
        watermark_keys(settings)  # a readable key file, created on first use in development
        new = rotate_watermark_keys(path)
    except (WatermarkError, ValueError) as exc:
        raise fail(str(exc)) from exc
    Console().print(f"[green]new embedding key[/] id {new.key_id} in {path}; older keys now detect only")
