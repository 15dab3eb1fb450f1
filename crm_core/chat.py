"""Chat, WhatsApp and SMS messages on cards (SPEC "Chat, WhatsApp, SMS" and "Which card?"):
the use cases a chat worker calls once it has a provider-neutral `Message` or `Status`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm_core import activities, card_cases, contact_cases
from crm_core.calls import Placed, card_for_contact, employee
from crm_core.models import (
    Activity,
    ChatMessage,
    Contact,
    ContactEmail,
    ContactPhone,
    HistoryEntry,
    User,
    dedupe_key,
)

# Delivery statuses of the providers, in the order a message goes through them; a status
# never goes back (a late "delivered" after "read" is kept out). Failure ends everything.
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "read": 4,
    "failed": 5,
    "undelivered": 5,
    "canceled": 5,
}


@dataclass(frozen=True)
class Message:
    """One message of a conversation, whatever the provider, as the worker read it."""

    source_id: int
    message_id: str  # the provider's id: one message, one history entry
    channel: str  # the history (and activity) type: chat | whatsapp | sms | telegram...
    noun: str  # what a user reads it as: "WhatsApp message" ("incoming WhatsApp message")
    provider: str  # the source kind: widget | whatsapp | twilio...
    sent_at: datetime
    direction: str = "incoming"  # incoming (the customer) | outgoing (an employee's reply)
    sender_name: str = ""
    phone: str | None = None  # the customer, E.164
    email: str | None = None
    visitor_id: str | None = None
    employee: str | None = None  # outgoing: the user (id or e-mail) who wrote it
    text: str = ""
    media: list[dict[str, Any]] = field(default_factory=list)  # links or provider media ids
    location: dict[str, Any] | None = None
    shared_contacts: list[dict[str, Any]] = field(default_factory=list)
    reply_to: str | None = None  # provider id of the message this one answers
    reaction: dict[str, str] | None = None  # {"message_id", "emoji"}; "" emoji = removed
    kind: str = "text"  # the provider's type (text, image, location, reaction...)

    @property
    def dedupe_key(self) -> str:
        return dedupe_key("chat", self.source_id, self.message_id)

    @property
    def asks_attention(self) -> bool:
        """A customer's message is an incoming event; a reaction, or a notice of WhatsApp's
        own (the customer changed numbers, opened the chat), is history only."""
        return (
            self.direction == "incoming"
            and self.reaction is None
            and self.kind not in ("system", "request_welcome")
        )


@dataclass(frozen=True)
class Status:
    """A delivery report (sent, delivered, read, failed) on a message: not a customer message."""

    source_id: int
    message_id: str
    status: str
    at: datetime
    error: str | None = None


def find_contact(
    session: Session, email: str | None, phone: str | None, name: str = ""
) -> Contact | None:
    """The contact with this e-mail, else with this phone (E.164), made with both when
    neither is known. A contact found is never given the other detail: a chat visitor
    types what they like, and must not attach their number to someone else's contact.
    None without either."""
    address = email.strip().lower() if email else None
    if not address and not phone:
        return None
    contact = contact_cases.contact_by_email(session, address, create=False) if address else None
    if contact is None and phone:
        new = _unknown(session, ContactPhone.number, phone)
        contact = contact_cases.contact_by_phone(session, phone, name=name)
        if new and address:  # a contact made now: with both details
            contact.emails.append(ContactEmail(address=address))
            session.flush()
    if contact is None:
        contact = contact_cases.contact_by_email(session, str(address), create=True, name=name)
    return contact


def _unknown(session: Session, column: Any, value: str) -> bool:
    return session.scalar(select(column).where(column == value).limit(1)) is None


def record_message(
    session: Session,
    message: Message,
    inbound_id: int | None,
    now: datetime,
    card_id: int | None = None,
) -> Placed:
    """Put a message on its card (`card_id`, else the contact's card by the SPEC's rule).

    A customer's message is an incoming event: history, incoming activity, unread, counter,
    focus. A reaction is history only (it asks nothing of anyone). An employee's reply is
    history and answers the customer's waiting messages on the card (their activities are
    closed). Running it again for the same message changes nothing.
    """
    contact = find_contact(session, message.email, message.phone, message.sender_name)
    if card_id is None:
        card_id = card_for_contact(session, contact.id) if contact is not None else None
        if card_id is None:
            return Placed(None, contact.id if contact else None, created=False)
    card = card_cases.lock_card(session, card_id)
    contact_id = contact.id if contact else None
    existing = session.scalar(
        select(HistoryEntry.id).where(
            HistoryEntry.card_id == card.id, HistoryEntry.dedupe_key == message.dedupe_key
        )
    )
    if existing is not None:
        return Placed(card.id, contact_id, created=False)
    author = employee(session, message.employee) if message.employee else None
    if contact is not None:
        contact_cases.link_contact(session, card.id, contact.id)
    row = _message_row(session, message.source_id, message.message_id)
    entry = HistoryEntry(
        card_id=card.id,
        type=message.channel,
        occurred_at=message.sent_at,
        logged_at=now,
        logged_by_id=author.id if author else None,
        inbound_id=inbound_id,
        dedupe_key=message.dedupe_key,
        data={
            "direction": message.direction,
            "provider": message.provider,
            "message_id": message.message_id,
            "kind": message.kind,
            "from": {
                "name": message.sender_name,
                "phone": message.phone,
                "email": message.email,
                "visitor_id": message.visitor_id,
            },
            "contact_id": contact_id,
            "employee": (
                {"id": author.id, "name": author.name, "address": author.email} if author else None
            ),
            "text": message.text,
            "media": message.media,
            "location": message.location,
            "shared_contacts": message.shared_contacts,
            "in_reply_to": (
                {"message_id": message.reply_to, "history_id": None, "text": None}
                if message.reply_to
                else None
            ),
            "reaction": message.reaction,
            "status": row.status,
            "status_at": row.status_at.isoformat() if row.status_at else None,
            "status_error": row.status_error,
        },
    )
    session.add(entry)
    session.flush()
    row.history_entry_id = entry.id
    _thread(session, message, row, entry)
    if message.asks_attention:
        label = message.noun
        who = message.sender_name or message.phone or message.email or "a visitor"
        subject = f"{label[0].upper()}{label[1:]} from {who}: {_preview(message)}"
        activity = activities.incoming_event(
            session,
            card,
            message.channel,
            subject[:500],
            entry.id,
            f"incoming {label}",
            now,
        )
        if contact is not None:
            activity.contacts.append(contact)
    elif message.direction == "outgoing":
        card.last_activity_at = now
        answered = _answer_waiting(session, card.id, message.channel, author, now)
        entry.data = {**entry.data, "answered": answered}
    return Placed(card.id, contact_id, created=True)


def record_status(session: Session, status: Status) -> int | None:
    """Keep the furthest delivery status of a message, on its history entry if it has one
    (else until it arrives). Returns the message's card, if it is on one."""
    row = _message_row(session, status.source_id, status.message_id)
    rank = STATUS_RANK.get(status.status, -1)
    if rank > row.status_rank:
        row.status, row.status_rank = status.status, rank
        row.status_at, row.status_error = status.at, status.error
    if row.history_entry_id is None:
        return None
    entry = session.get(HistoryEntry, row.history_entry_id, with_for_update=True)
    if entry is None:
        return None
    entry.data = {
        **entry.data,
        "status": row.status,
        "status_at": row.status_at.isoformat() if row.status_at else None,
        "status_error": row.status_error,
    }
    return entry.card_id


def _message_row(session: Session, source_id: int, message_id: str) -> ChatMessage:
    """The message's row, locked for this transaction; made when it is the first news of it
    (a status, a reply or a reaction may come before the message itself, even concurrently:
    the insert then waits for the other transaction and does nothing)."""
    key = message_id[:200]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(ChatMessage)
        .values(source_id=source_id, message_id=key, status_rank=-1)
        .on_conflict_do_nothing()
    )
    return session.scalars(
        select(ChatMessage)
        .where(ChatMessage.source_id == source_id, ChatMessage.message_id == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def _thread(session: Session, message: Message, row: ChatMessage, entry: HistoryEntry) -> None:
    """Join a reply to what it quotes and a reaction to what it is about, in whichever order
    the two are processed: the later of the two completes both entries."""
    target = message.reaction["message_id"] if message.reaction else message.reply_to
    if target:
        row.reply_to = target[:200]
        quoted = _message_row(session, message.source_id, target)
        if quoted.history_entry_id is not None:
            original = session.get(HistoryEntry, quoted.history_entry_id, with_for_update=True)
            if original is not None:
                _join(original, entry)
    waiting = session.scalars(
        select(HistoryEntry)
        .join(ChatMessage, ChatMessage.history_entry_id == HistoryEntry.id)
        .where(
            ChatMessage.source_id == message.source_id,
            ChatMessage.reply_to == message.message_id[:200],
        )
        .order_by(HistoryEntry.id)
        .with_for_update(of=HistoryEntry)
    ).all()
    for answer in waiting:
        _join(entry, answer)


def _join(original: HistoryEntry, answer: HistoryEntry) -> None:
    reaction = answer.data.get("reaction")
    if reaction:
        # WhatsApp: one reaction per person and message, the latest sent counts (whatever
        # the order of processing); an empty emoji removes it.
        sent = answer.occurred_at.isoformat()
        if sent >= str(original.data.get("customer_reaction_at") or ""):
            original.data = {
                **original.data,
                "customer_reaction": reaction.get("emoji") or None,
                "customer_reaction_at": sent,
            }
        return
    quoted = {
        "message_id": original.data.get("message_id"),
        "history_id": original.id,
        "text": str(original.data.get("text") or "")[:200],
    }
    answer.data = {**answer.data, "in_reply_to": quoted}


def _preview(message: Message) -> str:
    if message.text:
        return message.text[:120]
    if message.media:
        return f"{len(message.media)} file(s)"
    if message.location:
        return "a location"
    if message.shared_contacts:
        return "contact details"
    return f"({message.kind})"


def _answer_waiting(
    session: Session, card_id: int, channel: str, author: User | None, now: datetime
) -> list[int]:
    """An employee's reply answers the customer: their open incoming messages of this
    channel on the card are closed (done)."""
    waiting = session.scalars(
        select(Activity)
        .where(
            Activity.card_id == card_id,
            Activity.type == channel,
            Activity.incoming,
            Activity.is_open,
        )
        .order_by(Activity.id)
        .with_for_update()
    ).all()
    for activity in waiting:
        activities.close_activity(
            session, activity, "done", True, author.id if author else None, now
        )
    return [a.id for a in waiting]
