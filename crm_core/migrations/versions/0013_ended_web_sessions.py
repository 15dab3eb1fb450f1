"""Signed-out web page sessions: a copy of a signed-out session cookie signs nothing in.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ended_web_sessions",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index("ix_ended_web_sessions_ends_at", "ended_web_sessions", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_ended_web_sessions_ends_at", table_name="ended_web_sessions")
    op.drop_table("ended_web_sessions")
