"""The inbound store (raw inputs as front doors received them) and the integrations that
feed it: sources, IMAP mailboxes, chat messages and payments by their provider ids."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base
from crm_core.models.common import UTCDateTime, utcnow


class InboundStatus(enum.StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    REJECTED = "rejected"
    FAILED = "failed"
    # Understood, but no card to put it on (an unknown number): waits to be attached.
    UNMATCHED = "unmatched"
    # Not processed on purpose (a suspected mail loop), with the reason; re-processable.
    HELD = "held"


class InboundItem(Base):
    """One raw input exactly as a front door received it, with its processing status."""

    __tablename__ = "inbound_items"
    __table_args__ = (
        Index("ix_inbound_items_status_enqueued", "status", "enqueued_at"),
        # Retention: finished items past their time.
        Index("ix_inbound_items_status_finished", "status", "finished_at"),
        # Loop guard: recent copies of one message to one archive address, by content and
        # by Message-ID (`ingest.mailbox.processing.recent_copies`).
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
