"""Chat, WhatsApp and SMS messages by provider id: their history entry and delivery status.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_messages",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("history_entry_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("status_rank", sa.Integer(), nullable=False),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_error", sa.Text(), nullable=True),
        sa.Column("reply_to", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_chat_messages_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["history_entry_id"],
            ["history_entries.id"],
            name=op.f("fk_chat_messages_history_entry_id_history_entries"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("source_id", "message_id", name=op.f("pk_chat_messages")),
    )
    op.create_index(
        "ix_chat_messages_reply_to", "chat_messages", ["source_id", "reply_to"], unique=False
    )


def downgrade() -> None:
    op.drop_table("chat_messages")
