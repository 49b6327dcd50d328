"""`hallmark policy`: generation policies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hallmark.cli.common import fail

policy_app = typer.Typer(help="Generation policies.", no_args_is_help=True)


@policy_app.command("check")
def policy_check(
    file: Annotated[Path | None, typer.Argument(help="Policy TOML (default: shipped).")] = None,
) -> None:
    """Validate a policy file and print its version."""
    from policy import Policy, PolicyError

    try:
        loaded = Policy.load(file)
    except PolicyError as exc:
        raise fail(str(exc)) from exc
    Console().print(f"[green]valid[/]: {loaded.label} ({loaded.source})")
