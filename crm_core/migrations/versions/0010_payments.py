"""Payments of orders by provider id: their latest state and the card they landed on.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("status_rank", sa.Integer(), nullable=False),
        sa.Column("status_event", sa.String(length=200), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("order_ref", sa.String(length=200), nullable=True),
        sa.Column("card_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_payments_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["cards.id"],
            name=op.f("fk_payments_card_id_cards"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("source_id", "payment_id", name=op.f("pk_payments")),
    )
    op.create_index("ix_payments_order_ref", "payments", ["order_ref"], unique=False)
    op.create_index(op.f("ix_payments_card_id"), "payments", ["card_id"], unique=False)


def downgrade() -> None:
    op.drop_table("payments")
