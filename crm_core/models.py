"""The CRM core's tables (SQLAlchemy 2 typed mappings); migrations mirror them.

Read by the use cases in `services.py`; the inbound store (`InboundItem`) lives
here too so one Alembic history covers the whole schema.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_core.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


KEY_LENGTH = 200  # dedupe keys (inbound items, history entries)


def dedupe_key(*parts: object) -> str:
    """`part:part:...`, or its prefix and SHA-256 when longer than a key column holds:
    two long ids that share a beginning must never become the same key."""
    key = ":".join(str(p) for p in parts)
    if len(key) <= KEY_LENGTH:
        return key
    return f"{parts[0]}-sha256:{hashlib.sha256(key.encode()).hexdigest()}"


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EntityType(enum.StrEnum):
    DEAL = "deal"
    LEAD = "lead"
    INVOICE = "invoice"
    SMART_PROCESS = "smart_process"


class InboundStatus(enum.StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    REJECTED = "rejected"
    FAILED = "failed"
    # Understood, but no card to put it on (an unknown number): waits to be attached.
    UNMATCHED = "unmatched"
    # Not processed on purpose (a suspected mail loop), with the reason; re-processable.
    HELD = "held"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("ix_users_calendar_token_hash", "calendar_token_hash", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # N: minutes before a deadline at which an activity counts as Planned and focuses its card.
    planned_lead_minutes: Mapped[int] = mapped_column(Integer, default=15)
    # The user's manager: managers see their subordinates' counters ("employees").
    manager_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Access rights (seed 003): a department (for the "department" level), the roles below,
    # and administrators, who may do everything.
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL", use_alter=True), default=None, index=True
    )
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # SHA-256 of the secret in the user's iCalendar feed URL; None: no feed.
    calendar_token_hash: Mapped[str | None] = mapped_column(String(64), default=None)


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    head_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )


class Role(Base):
    """Levels per entity type and action: {"deal": {"read": "all", "edit": "own", ...}}."""

    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    permissions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ApiToken(Base):
    """A user's API token: only its SHA-256 is kept; every request with it acts as the user."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class EndedWebSession(Base):
    """A web page session that was signed out: a copy of its cookie (which seals this id)
    signs nothing in any more. Kept until the cookie's own end, then forgotten."""

    __tablename__ = "ended_web_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


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


class InboundItem(Base):
    """One raw input exactly as a front door received it, with its processing status."""

    __tablename__ = "inbound_items"
    __table_args__ = (
        Index("ix_inbound_items_status_enqueued", "status", "enqueued_at"),
        # Retention: finished items past their time.
        Index("ix_inbound_items_status_finished", "status", "finished_at"),
        # Loop guard: recent copies of one message to one archive address, by content and
        # by Message-ID (`inbound.recent_copies`).
        Index("ix_inbound_items_loop", "recipient", "content_digest", "received_at"),
        Index("ix_inbound_items_loop_message_id", "recipient", "message_id_hash", "received_at"),
        # A user's own inputs ("My forwards", GET /api/me/inbound), newest first.
        Index("ix_inbound_items_sender_received", "sender", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(320), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # What the front door saw besides the bytes: peer address, envelope sender, HELO name.
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Same input twice (e.g. an SMTP client retrying after a lost 250) = same key = one item.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=InboundStatus.RECEIVED.value)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    card_id: Mapped[int | None] = mapped_column(
        ForeignKey("cards.id", ondelete="SET NULL"), default=None
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # How many times the sweeper sent it to the broker again (the broker lost it, a worker
    # died with it, or it waited in a queue longer than the sweep delay).
    resends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Of those, the re-sends since an attempt last started: each such one (the broker most
    # likely still holds the item, behind a backlog) makes the sweeper wait longer.
    quiet_resends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Who sent it, as processing read it (an e-mail's From address).
    sender: Mapped[str | None] = mapped_column(String(320), default=None)
    # What the loop guard compares, set by processing (`ingest.mailbox.loop_guard`): a hash
    # of the Message-ID (None without one) and a digest of the content.
    message_id_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    content_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    # Kept past the retention period whatever its status (also when its card is on hold).
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When retention deleted `raw` (left empty); the row, status and dedupe key stay.
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Source(Base):
    """A sending integration (call-log app, provider webhook) and its sealed secrets.

    `settings` holds what may be shown (region, employee numbers...); `sealed` the secrets
    (our generated signing secret, a provider's token), encrypted by `ingest.sealing`.
    """

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Mailbox(Base):
    """An IMAP mailbox the poller reads (SPEC "Mail: the per-card archive address", IMAP).

    The password or OAuth2 token is sealed like the sources' secrets. The cursor is the
    folder's UIDVALIDITY and the last UID taken: UIDs only mean something within one
    UIDVALIDITY (RFC 3501 section 2.3.1.1), so a new one starts the folder over.
    """

    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(16))  # tls | starttls | none
    username: Mapped[str] = mapped_column(String(320))
    auth: Mapped[str] = mapped_column(String(16), default="password")  # password | oauth2
    sealed: Mapped[str] = mapped_column(Text)
    folder: Mapped[str] = mapped_column(String(255), default="INBOX")
    # Where a stored message goes; None: it is flagged \Seen and stays in the folder.
    processed_folder: Mapped[str | None] = mapped_column(String(255), default=None)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ChatMessage(Base):
    """One provider message (chat widget, WhatsApp, SMS) by the provider's id: the history
    entry it became, and its delivery status, which may arrive before the message itself."""

    __tablename__ = "chat_messages"
    __table_args__ = (Index("ix_chat_messages_reply_to", "source_id", "reply_to"),)

    source_id: Mapped[int] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
    )
    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    history_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("history_entries.id", ondelete="SET NULL"), default=None
    )
    # sent < delivered < read; failed ends it (with `status_error`). None: no status yet.
    status: Mapped[str | None] = mapped_column(String(32), default=None)
    status_rank: Mapped[int] = mapped_column(Integer, default=-1)
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    status_error: Mapped[str | None] = mapped_column(Text, default=None)
    # The message this one answers: a reply may be processed before what it quotes.
    reply_to: Mapped[str | None] = mapped_column(String(200), default=None)


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


class CompanySetting(Base):
    """Company-wide settings (counter mode, activity types and statuses), one JSON value each."""

    __tablename__ = "company_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


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


class UserCounter(Base):
    """Maintained counts per user, changed in the same transaction as the activities they count.

    Both counter modes are kept up to date at all times: switching modes rebuilds nothing.
    The row also caches the user's last counters read (the `snap_` columns).
    """

    __tablename__ = "user_counters"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # Open incoming activities the user is responsible for ("activity responsible" mode)...
    incoming: Mapped[int] = mapped_column(Integer, default=0)
    # ...and open incoming activities on cards the user is responsible for ("item responsible").
    incoming_items: Mapped[int] = mapped_column(Integer, default=0)
    # Raised in the transaction of every change that may move this user's counters or their
    # employees' (see `counters.invalidate`): a snapshot taken at another version is stale.
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The last counters read, in `snap_mode`, exact for `snap_from <= now < snap_until` while
    # `snap_version == version`: the clock-driven counts can only change at `snap_until`.
    snap_version: Mapped[int | None] = mapped_column(BigInteger, default=None)
    snap_mode: Mapped[str | None] = mapped_column(String(32), default=None)
    snap_from: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    snap_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    snap_incoming: Mapped[int | None] = mapped_column(Integer, default=None)
    snap_planned: Mapped[int | None] = mapped_column(Integer, default=None)
    snap_today: Mapped[int | None] = mapped_column(Integer, default=None)
    snap_team_incoming: Mapped[int | None] = mapped_column(Integer, default=None)
    snap_team_planned: Mapped[int | None] = mapped_column(Integer, default=None)


class Blob(Base):
    """File content, stored once per SHA-256 whatever how many documents share it."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class Document(Base):
    """A file on a card (an attachment of a mail so far). Inline images of a mail's HTML are
    kept the same way but flagged `inline` and not listed among the card's documents."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"), index=True)
    history_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("history_entries.id", ondelete="SET NULL"), default=None, index=True
    )
    file_name: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Payment(Base):
    """One payment of an order by the provider's id (a Stripe PaymentIntent, a payment of
    our `payment` hook): its latest state, whatever order its events arrive in, and the card
    it landed on, so its later events (a refund) follow it there."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_order_ref", "order_ref"),)

    source_id: Mapped[int] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
    )
    payment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # pending < failed < succeeded < partially_refunded < refunded; None: no event applied yet.
    status: Mapped[str | None] = mapped_column(String(32), default=None)
    status_rank: Mapped[int] = mapped_column(Integer, default=-1)
    # The event that set the status (its history key), its time and why (failure, refund).
    status_event: Mapped[str | None] = mapped_column(String(200), default=None)
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    # Minor units (cents; yen; fils), exactly as the provider sent them, and ISO 4217.
    amount: Mapped[int | None] = mapped_column(BigInteger, default=None)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    order_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    card_id: Mapped[int | None] = mapped_column(
        ForeignKey("cards.id", ondelete="SET NULL"), default=None, index=True
    )
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
