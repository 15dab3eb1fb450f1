"""Cards and their contacts, archive addresses and unread marks: what the use cases of
`crm_core.cards` and `crm_core.contacts` write."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_core.db import Base
from crm_core.models.common import UTCDateTime, utcnow
from crm_core.models.users import User


class EntityType(enum.StrEnum):
    DEAL = "deal"
    LEAD = "lead"
    INVOICE = "invoice"
    SMART_PROCESS = "smart_process"


class CardContact(Base):
    __tablename__ = "card_contacts"

    card_id: Mapped[int] = mapped_column(
        ForeignKey("cards.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (
        # The Kanban query: one column of one entity type, latest focus first (read backwards).
        Index("ix_cards_kanban_rank", "entity_type", "stage", "focus_rank", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    entity_type: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(100))
    responsible_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # None while open; "won" or "lost" once closed (closed cards get no new events by contact).
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Focus: the card sits at the top of its column, ordered by the latest focus moment.
    focus_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # focus_at in microseconds since the epoch, 0 if never focused: a NOT NULL sort key that
    # one plain index serves on every database.
    focus_rank: Mapped[int] = mapped_column(BigInteger, default=0)
    focus_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    # Legal hold: the raw inputs that landed on this card are kept past their retention.
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    responsible: Mapped[User] = relationship()
    contacts: Mapped[list[Contact]] = relationship(secondary="card_contacts", lazy="selectin")


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    emails: Mapped[list[ContactEmail]] = relationship(lazy="selectin", cascade="all, delete-orphan")
    phones: Mapped[list[ContactPhone]] = relationship(lazy="selectin", cascade="all, delete-orphan")


class ContactEmail(Base):
    __tablename__ = "contact_emails"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    # Stored lower-case; one address belongs to one contact.
    address: Mapped[str] = mapped_column(String(320), unique=True)


class ContactPhone(Base):
    __tablename__ = "contact_phones"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    # E.164, e.g. +33612345678.
    number: Mapped[str] = mapped_column(String(32), unique=True)


class ArchiveAddress(Base):
    """A card's archive address; only the SHA-256 of its random token is kept."""

    __tablename__ = "archive_addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the address is rotated: it keeps working until then.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class CardUnread(Base):
    """The card is unread for this user until they open it or mark it read."""

    __tablename__ = "card_unread"

    card_id: Mapped[int] = mapped_column(
        ForeignKey("cards.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
