"""What the command modules share: settings, errors, exit codes, the audit store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)
# Exit codes of `generate` and the audit commands (1 is a usage or request error); `verify` has its own.
EXIT_BLOCKED, EXIT_ERROR = 3, 4


def load_settings(**overrides):
    from hallmark.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def audit_store(settings):
    from audit import SchemaError
    from hallmark.compose import open_store

    try:
        return open_store(settings)
    except SchemaError as exc:
        raise fail(str(exc)) from exc


def policy_path(settings) -> Path:
    from policy import default_policy_path

    return Path(settings.policy) if settings.policy else default_policy_path()
