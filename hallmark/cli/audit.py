"""`hallmark audit`: the audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hallmark.cli.common import EXIT_ERROR, audit_store, console, fail, load_settings

audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            help="A checkpoint file kept elsewhere (from `hallmark audit checkpoint --out`); repeatable."
        ),
    ] = None,
) -> None:
    """Recompute the audit log's hash chain, check its signed checkpoints, report the first broken link."""
    from audit import CheckpointStatement

    settings = load_settings()
    extra = []
    for path in checkpoint or []:
        try:
            extra.append(CheckpointStatement.from_dict(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError) as exc:
            raise fail(f"{path}: not a checkpoint file: {exc}") from exc
    with console.status("Checking the audit chain..."):
        report = audit_store(settings).verify_chain(extra)
    for warning in dict.fromkeys(report.warnings):
        console.print(f"[yellow]warning:[/] {warning}")
    if report.ok:
        Console().print(
            f"[green]audit chain intact[/]: {report.rows_checked} rows, "
            f"{report.checkpoints_checked} signed checkpoints in {settings.resolved_database_url}"
        )
        return
    raise fail(
        f"audit chain broken at seq {report.first_broken_seq}: {report.problem} "
        f"({report.rows_checked} rows before it are intact)",
        code=EXIT_ERROR,
    )


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[
        Path | None,
        typer.Option(help="Also write the signed checkpoint here (keep a copy off this machine)."),
    ] = None,
) -> None:
    """Sign the current head of the audit chain now."""
    statement = audit_store(load_settings()).checkpoint()
    if out is not None:
        out.write_text(json.dumps(statement.to_dict(), indent=2) + "\n")
    Console().print(
        f"[green]checkpoint[/] signed at seq {statement.head_seq} ({statement.head_hash[:16]}...)"
        + (f", written to {out}" if out else "")
    )


@audit_app.command("redact")
def audit_redact(
    generation_id: Annotated[str, typer.Argument(help="The record whose prompt and image hash to erase.")],
    reason: Annotated[str, typer.Option(help="The request this answers (kept in the log).")],
    by: Annotated[str, typer.Option(help="Who asked for it.")] = "cli",
) -> None:
    """Erase a record's prompt and input-image hash; a chained redaction event records it."""
    from audit import AuditError

    try:
        row = audit_store(load_settings()).redact(generation_id, reason, by)
    except AuditError as exc:
        raise fail(str(exc)) from exc
    Console().print(f"[green]redacted[/] {generation_id} (event seq {row.seq})")
