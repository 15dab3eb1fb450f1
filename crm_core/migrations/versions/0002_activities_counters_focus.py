"""Activities, counters in both modes, time-driven focus, comments, company settings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 06:44:53.111060
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "company_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_company_settings")),
    )
    op.create_table(
        "activity_cards",
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name=op.f("fk_activity_cards_activity_id_activities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["cards.id"],
            name=op.f("fk_activity_cards_card_id_cards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("activity_id", "card_id", name=op.f("pk_activity_cards")),
    )
    op.create_index(op.f("ix_activity_cards_card_id"), "activity_cards", ["card_id"])
    op.create_table(
        "activity_contacts",
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name=op.f("fk_activity_contacts_activity_id_activities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_activity_contacts_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("activity_id", "contact_id", name=op.f("pk_activity_contacts")),
    )
    op.create_table(
        "activity_users",
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name=op.f("fk_activity_users_activity_id_activities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_activity_users_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("activity_id", "user_id", name=op.f("pk_activity_users")),
    )
    op.create_index(op.f("ix_activity_users_user_id"), "activity_users", ["user_id"])
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name=op.f("fk_comments_activity_id_activities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_comments_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_comments_card_id_cards"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comments")),
    )
    op.create_index(op.f("ix_comments_activity_id"), "comments", ["activity_id"])
    op.create_index(op.f("ix_comments_card_id"), "comments", ["card_id"])

    with op.batch_alter_table("activities") as batch_op:
        batch_op.add_column(sa.Column("card_responsible_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("next_focus_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closed_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("success", sa.Boolean(), nullable=True))
    # Existing activities: their card's responsible, and their card as their only link.
    op.execute(
        "UPDATE activities SET card_responsible_id = "
        "(SELECT responsible_id FROM cards WHERE cards.id = activities.card_id)"
    )
    op.execute(
        "INSERT INTO activity_cards (activity_id, card_id) SELECT id, card_id FROM activities"
    )
    with op.batch_alter_table("activities") as batch_op:
        batch_op.alter_column("card_responsible_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(
            "ix_activities_next_focus",
            ["next_focus_at"],
            postgresql_where=sa.text("is_open AND next_focus_at IS NOT NULL"),
            sqlite_where=sa.text("is_open = 1 AND next_focus_at IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_activities_open_deadline",
            ["responsible_id", "deadline"],
            postgresql_where=sa.text("is_open"),
            sqlite_where=sa.text("is_open = 1"),
        )
        batch_op.create_index(
            "ix_activities_open_item_deadline",
            ["card_responsible_id", "deadline"],
            postgresql_where=sa.text("is_open"),
            sqlite_where=sa.text("is_open = 1"),
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_activities_card_responsible_id_users"),
            "users",
            ["card_responsible_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_activities_closed_by_id_users"),
            "users",
            ["closed_by_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("cards") as batch_op:
        batch_op.add_column(
            sa.Column("focus_rank", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.drop_index(batch_op.f("ix_cards_kanban"))
        batch_op.create_index("ix_cards_kanban_rank", ["entity_type", "stage", "focus_rank", "id"])
    connection = op.get_bind()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    focused = connection.execute(
        sa.text("SELECT id, focus_at FROM cards WHERE focus_at IS NOT NULL")
    )
    for card_id, focus_at in focused.all():
        moment = focus_at if focus_at.tzinfo else focus_at.replace(tzinfo=UTC)
        rank = (moment - epoch) // timedelta(microseconds=1)
        connection.execute(
            sa.text("UPDATE cards SET focus_rank = :rank WHERE id = :id"),
            {"rank": rank, "id": card_id},
        )

    with op.batch_alter_table("user_counters") as batch_op:
        batch_op.add_column(
            sa.Column("incoming_items", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE user_counters SET incoming_items = (SELECT count(*) FROM activities "
        "WHERE activities.card_responsible_id = user_counters.user_id "
        "AND activities.is_open AND activities.incoming)"
    )

    with op.batch_alter_table("users") as batch_op:
        batch_op.alter_column(
            "remind_minutes", new_column_name="planned_lead_minutes", existing_type=sa.Integer()
        )
        batch_op.add_column(sa.Column("manager_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_users_manager_id"), ["manager_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_users_manager_id_users"),
            "users",
            ["manager_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_users_manager_id_users"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_users_manager_id"))
        batch_op.drop_column("manager_id")
        batch_op.alter_column(
            "planned_lead_minutes", new_column_name="remind_minutes", existing_type=sa.Integer()
        )
    with op.batch_alter_table("user_counters") as batch_op:
        batch_op.drop_column("incoming_items")
    with op.batch_alter_table("cards") as batch_op:
        batch_op.drop_index("ix_cards_kanban_rank")
        batch_op.create_index(
            batch_op.f("ix_cards_kanban"), ["entity_type", "stage", "focus_at", "id"]
        )
        batch_op.drop_column("focus_rank")
    with op.batch_alter_table("activities") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_activities_closed_by_id_users"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_activities_card_responsible_id_users"), type_="foreignkey"
        )
        batch_op.drop_index("ix_activities_open_item_deadline")
        batch_op.drop_index("ix_activities_open_deadline")
        batch_op.drop_index("ix_activities_next_focus")
        for column in ("success", "closed_by_id", "next_focus_at", "description"):
            batch_op.drop_column(column)
        batch_op.drop_column("card_responsible_id")
    for table in ("comments", "activity_users", "activity_contacts", "activity_cards"):
        op.drop_table(table)
    op.drop_table("company_settings")
