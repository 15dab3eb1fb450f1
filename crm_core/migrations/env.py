"""Alembic environment: runs on the connection `crm_core.db.upgrade_schema` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

import crm_core.models  # noqa: F401 - registers the tables on Base.metadata
from crm_core.db import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # `alembic` CLI use: the URL comes from -x url=...
        url = context.get_x_argument(as_dictionary=True)["url"]
        with create_engine(url).connect() as own:
            _run(own)
    else:
        _run(connection)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs table rebuilds for most ALTERs
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
