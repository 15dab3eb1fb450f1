"""The Alembic history builds exactly the schema the models describe, on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from crm_core.db import Base, make_engine, upgrade_schema


def test_migrations_match_the_models(migrated: str) -> None:
    engine = make_engine(migrated)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


@pytest.fixture
def empty_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own, with no schema yet."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    admin = create_engine(make_url(database_url).set(database="test"), isolation_level="AUTOCOMMIT")
    name = f"crm_mig_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_upgrading_a_database_in_use_keeps_every_row(empty_database: str) -> None:
    """A database at an older revision, with users, cards, activities, counters and marks,
    upgrades to the newest without losing a row (SQLite rebuilds tables on the way)."""
    engine = make_engine(empty_database)
    try:
        upgrade_schema(engine, "0007")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, email, name, timezone, planned_lead_minutes,"
                    " created_at) VALUES (1, 'anna@example.com', 'Anna', 'UTC', 15,"
                    " CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO user_counters (user_id, incoming, incoming_items, version)"
                    " VALUES (1, 1, 1, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO cards (id, title, entity_type, stage, responsible_id, created_at,"
                    " focus_rank) VALUES (1, 'Deal', 'deal', 'new', 1, CURRENT_TIMESTAMP, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO activities (id, card_id, type, incoming, is_open, status,"
                    " responsible_id, card_responsible_id, subject, description, created_at,"
                    " closed_by_id) VALUES (1, 1, 'email', true, false, 'done', 1, 1, 's', '',"
                    " CURRENT_TIMESTAMP, 1)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO card_unread (card_id, user_id, since)"
                    " VALUES (1, 1, CURRENT_TIMESTAMP)"
                )
            )
        upgrade_schema(engine)
        with engine.connect() as conn:
            counts = {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("users", "user_counters", "cards", "activities", "card_unread")
            }
            closed_by = conn.execute(text("SELECT closed_by_id FROM activities")).scalar_one()
            admin = conn.execute(text("SELECT is_admin FROM users")).scalar_one()
    finally:
        engine.dispose()
    assert counts == dict.fromkeys(counts, 1)
    assert closed_by == 1 and not admin
