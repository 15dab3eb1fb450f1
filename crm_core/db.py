"""Database plumbing for the CRM core: engine, sessions, declarative Base.

Everything is built by functions (never at import) so each process, test or
front door chooses its own database URL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Stable constraint names, so Alembic migrations read the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def make_engine(url: str, lock_timeout_seconds: float = 10.0) -> Engine:
    """An engine for `url`; a write waits at most `lock_timeout_seconds` for a lock."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, lock_timeout_seconds)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")  # psycopg 3 driver
    millis = int(lock_timeout_seconds * 1000)
    return create_engine(
        url,
        pool_pre_ping=True,
        # Errors name no bound values: those are mail bytes and addresses, and error texts
        # go to logs and to an inbound item's `error`.
        hide_parameters=True,
        connect_args={"options": f"-c lock_timeout={millis}"},
    )


def _sqlite_engine(url: str, lock_timeout_seconds: float) -> Engine:
    database = url.split("///", 1)[-1]
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        hide_parameters=True,  # as on PostgreSQL: no mail bytes in error texts
        connect_args={"timeout": lock_timeout_seconds, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide where transactions begin (SQLAlchemy docs,
        # "Serializable isolation / Savepoints / Transactional DDL" for pysqlite).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a read-then-write transaction can then
        # never fail half-way with SQLITE_BUSY_SNAPSHOT when another writer got in first.
        # Readers (see `read_only`) begin DEFERRED and, in WAL mode, never wait for writers.
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


_SQLITE_BEGIN = "crm_sqlite_begin"


def make_session_factory(
    engine: Engine, defaults: dict[str, Any] | None = None
) -> sessionmaker[Session]:
    """`defaults`: company settings' defaults given by the layer above (e.g. the activity
    types of the channels it runs), read by `crm_core.company` through `session.info`."""
    return sessionmaker(engine, expire_on_commit=False, info={"defaults": dict(defaults or {})})


@contextmanager
def read_only(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads: on SQLite it does not take the write lock; on PostgreSQL it runs
    in autocommit (no BEGIN/ROLLBACK round trips; each statement sees committed data)."""
    with factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        else:
            session.connection(execution_options={_SQLITE_BEGIN: "DEFERRED"})
        yield session


def may_write(session: Session) -> bool:
    """Whether a write on this session is kept without taking SQLite's write lock: true in a
    unit of work and on PostgreSQL's autocommit reads, false on SQLite's read-only sessions."""
    options = session.connection().get_execution_options()
    return options.get(_SQLITE_BEGIN) != "DEFERRED"


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One use case, one transaction: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def check_database(engine: Engine) -> None:
    """Connect once, so a wrong URL fails at start with its reason, not in a worker later."""
    with engine.connect() as connection:
        connection.execution_options(**{_SQLITE_BEGIN: "DEFERRED"}).exec_driver_sql("SELECT 1")


def describe_url(url: str) -> str:
    """The URL without its password, for messages: the user's (`user:***@`) and one given
    as a query parameter (`?password=...`, libpq's spelling, or any key naming one)."""
    parsed = make_url(url)
    hidden = {key: "***" for key in parsed.query if "pass" in key.lower()}
    shown = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown.replace("=%2A%2A%2A", "=***")  # as the user's password is shown


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Bring the database to the newest Alembic revision (`crm-ingest migrate`).

    On SQLite, changing a table means rebuilding it; the rebuild runs with foreign keys off
    (they cannot change inside a transaction, so before it begins), or dropping the old
    table would cascade into every table that points at it (SQLite's "ALTER TABLE" page,
    "making other kinds of table schema changes"); the keys are checked before it is kept.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.connect() as connection:
        sqlite = engine.dialect.name == "sqlite"
        raw = connection.connection.driver_connection
        if sqlite:
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                assert raw is not None
                raw.execute("PRAGMA foreign_keys=ON")
