"""A card's timeline (history entries), its activities with their links, and comments:
written by `crm_core.activities`, `crm_core.history` and every recorded input."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_core.db import Base
from crm_core.models.cards import Card, Contact
from crm_core.models.common import UTCDateTime, utcnow
from crm_core.models.users import User


class HistoryEntry(Base):
    """One item of a card's timeline; `data` holds the type's own fields (from, to, subject...)."""

    __tablename__ = "history_entries"
    __table_args__ = (
        UniqueConstraint("card_id", "dedupe_key"),
        Index("ix_history_entries_card_occurred", "card_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    logged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    inbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_items.id", ondelete="SET NULL"), default=None
    )
    dedupe_key: Mapped[str | None] = mapped_column(String(200), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Activity(Base):
    """Something a user must act on; incoming ones (mail, call, chat) have no deadline.

    `card_id` is the main card; `ActivityCard` rows link every card it concerns (the main
    one included). `card_responsible_id` copies the main card's responsible so that the
    "item responsible" counters are an index range too.
    """

    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_responsible_open", "responsible_id", "is_open"),
        Index(
            "ix_activities_open_deadline",
            "responsible_id",
            "deadline",
            postgresql_where=text("is_open"),
            sqlite_where=text("is_open = 1"),
        ),
        Index(
            "ix_activities_open_item_deadline",
            "card_responsible_id",
            "deadline",
            postgresql_where=text("is_open"),
            sqlite_where=text("is_open = 1"),
        ),
        Index(
            "ix_activities_next_focus",
            "next_focus_at",
            postgresql_where=text("is_open AND next_focus_at IS NOT NULL"),
            sqlite_where=text("is_open = 1 AND next_focus_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    incoming: Mapped[bool] = mapped_column(Boolean, default=False)
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(32), default="scheduled")
    responsible_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    card_responsible_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    subject: Mapped[str] = mapped_column(String(500), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    history_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("history_entries.id", ondelete="SET NULL"), default=None
    )
    # The next time-driven focus moment (deadline - N, then the deadline); None when done.
    next_focus_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    closed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    success: Mapped[bool | None] = mapped_column(Boolean, default=None)

    cards: Mapped[list[Card]] = relationship(secondary="activity_cards", lazy="selectin")
    users: Mapped[list[User]] = relationship(secondary="activity_users", lazy="selectin")
    contacts: Mapped[list[Contact]] = relationship(secondary="activity_contacts", lazy="selectin")


class ActivityCard(Base):
    __tablename__ = "activity_cards"

    activity_id: Mapped[int] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True
    )
    card_id: Mapped[int] = mapped_column(
        ForeignKey("cards.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ActivityUser(Base):
    """Additional users of an activity (seed 004), besides its responsible."""

    __tablename__ = "activity_users"

    activity_id: Mapped[int] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ActivityContact(Base):
    __tablename__ = "activity_contacts"

    activity_id: Mapped[int] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )


class Comment(Base):
    """A comment on a card, or on one of its activities (`activity_id` set)."""

    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"), index=True)
    activity_id: Mapped[int | None] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), default=None, index=True
    )
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
