"""alembic environment: runs on the connection audit.migrate hands over (or on sqlalchemy.url)."""

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import audit.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
connection = config.attributes.get("connection")


def run(conn) -> None:
    context.configure(connection=conn, target_metadata=SQLModel.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url")).begin() as conn:
        run(conn)
