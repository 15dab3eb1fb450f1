"""Locks held by another session, so that processing or a store cannot commit meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text


@contextmanager
def card_locked(engine: Engine, card_id: int) -> Iterator[None]:
    """Processing cannot commit while this is held: the card row (PostgreSQL) or the database
    write lock (SQLite) is taken by another session."""
    with engine.connect() as conn:
        conn.begin()  # SQLite: BEGIN IMMEDIATE
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT id FROM cards WHERE id = :id FOR UPDATE"), {"id": card_id})
        try:
            yield
        finally:
            conn.rollback()


@contextmanager
def database_write_locked(engine: Engine) -> Iterator[None]:
    """Another session holds the inbound table (PostgreSQL) or the database (SQLite)."""
    with engine.connect() as conn:
        conn.begin()  # on SQLite our engine begins IMMEDIATE: the write lock is taken here
        if engine.dialect.name == "postgresql":
            conn.execute(text("LOCK TABLE inbound_items IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()
