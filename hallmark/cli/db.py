"""`hallmark db`: the audit database's schema."""

from __future__ import annotations

import typer
from rich.console import Console

from hallmark.cli.common import fail, load_settings

db_app = typer.Typer(help="The audit database's schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the audit database to this version's schema (back it up first)."""
    from sqlalchemy import create_engine

    from audit import SchemaError
    from audit.migrate import upgrade

    settings = load_settings()
    engine = create_engine(settings.resolved_database_url)
    try:
        before, after = upgrade(engine)
    except SchemaError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    state = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    Console().print(f"[green]{settings.resolved_database_url}[/]: {state} schema revision {after}")
