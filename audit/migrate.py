"""Schema migrations with alembic (audit/migrations). `hallmark db upgrade` runs `upgrade()`.

A new, empty database is brought to the current schema when the store first opens it, so the
embedded default needs no setup step; a database at an older revision is left alone until an
operator upgrades it on purpose.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

_SCRIPTS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x686D6967  # PostgreSQL advisory lock: one process migrates at a time


class SchemaError(RuntimeError):
    """The database's schema is not the one this version of Hallmark writes."""


def _config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return ScriptDirectory(str(_SCRIPTS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to `revision`; returns (revision before, revision after)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        if "generation_records" in inspect(conn).get_table_names() and not (
            MigrationContext.configure(conn).get_current_revision()
        ):
            raise SchemaError(
                "this audit database was created before schema migrations existed (Hallmark 0.1 "
                "development builds) and cannot be upgraded in place; keep it for reference and "
                "point HALLMARK_DATABASE_URL at a new database"
            )
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(_config(conn), revision)
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


def ensure_current(engine: Engine) -> None:
    """Create the schema in an empty database; refuse one at another revision."""
    with engine.connect() as conn:
        empty = not inspect(conn).get_table_names()
    if empty:
        upgrade(engine)
        return
    current, head = current_revision(engine), head_revision()
    if current != head:
        if current is None:
            upgrade(engine)  # raises SchemaError with the explanation
        raise SchemaError(
            f"the audit database is at schema revision {current}, this Hallmark needs {head}: "
            "run `hallmark db upgrade` (back the database up first)"
        )
