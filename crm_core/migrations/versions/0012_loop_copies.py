"""Loop guard by copies of one message: Message-ID hash and content digest on inbound items;
a user's own inputs by sender ("My forwards").

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-09 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_inbound_items_loop", table_name="inbound_items")
    with op.batch_alter_table("inbound_items") as batch:
        batch.add_column(sa.Column("message_id_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("content_digest", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_inbound_items_loop", "inbound_items", ["recipient", "content_digest", "received_at"]
    )
    op.create_index(
        "ix_inbound_items_loop_message_id",
        "inbound_items",
        ["recipient", "message_id_hash", "received_at"],
    )
    op.create_index("ix_inbound_items_sender_received", "inbound_items", ["sender", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_items_sender_received", table_name="inbound_items")
    op.drop_index("ix_inbound_items_loop_message_id", table_name="inbound_items")
    op.drop_index("ix_inbound_items_loop", table_name="inbound_items")
    with op.batch_alter_table("inbound_items") as batch:
        batch.drop_column("content_digest")
        batch.drop_column("message_id_hash")
    op.create_index(
        "ix_inbound_items_loop", "inbound_items", ["recipient", "sender", "received_at"]
    )
