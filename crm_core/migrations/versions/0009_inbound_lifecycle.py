"""Inbound lifecycle: loop counting by sender, retention of raw inputs, legal hold, resends.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_items") as batch:
        batch.add_column(sa.Column("sender", sa.String(length=320), nullable=True))
        batch.add_column(
            sa.Column("legal_hold", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("resends", sa.Integer(), server_default="0", nullable=False))
    op.create_index(
        "ix_inbound_items_loop", "inbound_items", ["recipient", "sender", "received_at"]
    )
    op.create_index("ix_inbound_items_status_finished", "inbound_items", ["status", "finished_at"])
    with op.batch_alter_table("cards") as batch:
        batch.add_column(
            sa.Column("legal_hold", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("cards") as batch:
        batch.drop_column("legal_hold")
    op.drop_index("ix_inbound_items_status_finished", table_name="inbound_items")
    op.drop_index("ix_inbound_items_loop", table_name="inbound_items")
    with op.batch_alter_table("inbound_items") as batch:
        batch.drop_column("resends")
        batch.drop_column("purged_at")
        batch.drop_column("legal_hold")
        batch.drop_column("sender")
