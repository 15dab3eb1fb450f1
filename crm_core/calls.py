"""Calls on cards (SPEC "Calls (call-log sync)" and "Which card?"): the use case a call-log
worker calls once it has a provider-neutral `Call`, and the one rule that picks the card.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core import activities, card_cases, contact_cases, focus
from crm_core.errors import NotFound
from crm_core.models import (
    Activity,
    ActivityContact,
    Card,
    CardContact,
    Contact,
    HistoryEntry,
    User,
    dedupe_key,
)

# An incoming call nobody took: the customer is waiting for a call back.
UNANSWERED = frozenset({"missed", "rejected", "voicemail", "busy"})
MISSED_CALL = "missed_call"  # the type of the activity a call back closes


@dataclass(frozen=True)
class Call:
    source_id: int
    call_id: str  # the provider's id: one call, one history entry per card
    provider: str
    employee: str  # a user id (digits) or e-mail
    number: str  # the other party, E.164
    direction: str  # incoming | outgoing
    outcome: str  # answered | missed | rejected | voicemail | busy | blocked
    started_at: datetime
    duration_seconds: int
    recording_url: str | None

    @property
    def dedupe_key(self) -> str:
        return dedupe_key("call", self.source_id, self.call_id)


@dataclass(frozen=True)
class Placed:
    card_id: int | None  # None: no open card for the contact (the unmatched list)
    contact_id: int | None  # None: nothing to find the contact by (a chat visitor's id only)
    created: bool


def card_for_contact(session: Session, contact_id: int) -> int | None:
    """SPEC "Which card?": the contact's open cards (not won or lost); of several, the one
    with the most recent activity (its creation when it never had any, then the newest);
    None when the contact has no open card."""
    return session.scalar(
        select(Card.id)
        .join(CardContact, CardContact.card_id == Card.id)
        .where(CardContact.contact_id == contact_id, Card.outcome.is_(None))
        .order_by(func.coalesce(Card.last_activity_at, Card.created_at).desc(), Card.id.desc())
        .limit(1)
    )


def employee(session: Session, reference: str) -> User:
    """The CRM user a call belongs to, by id or e-mail."""
    if reference.isdigit():
        user = session.get(User, int(reference))
    else:
        user = session.scalar(select(User).where(User.email == reference.strip().lower()))
    if user is None:
        raise NotFound(f"employee {reference!r} is not a CRM user")
    return user


def record_call(
    session: Session, call: Call, inbound_id: int | None, now: datetime, card_id: int | None = None
) -> Placed:
    """Put a call on its card (`card_id`, else the contact's card by the rule above).

    Every call goes to history. An incoming call (answered, or not: then it waits for a
    call back) is an incoming event: activity, unread, counter, focus. An answered outgoing
    call to the contact closes their open missed-call activities ("called back"). Running it
    again for the same call changes nothing.
    """
    user = employee(session, call.employee)
    contact = contact_cases.contact_by_phone(session, call.number)
    if card_id is None:
        card_id = card_for_contact(session, contact.id)
        if card_id is None:
            return Placed(None, contact.id, created=False)
    card = card_cases.lock_card(session, card_id)
    existing = session.scalar(
        select(HistoryEntry.id).where(
            HistoryEntry.card_id == card.id, HistoryEntry.dedupe_key == call.dedupe_key
        )
    )
    if existing is not None:
        return Placed(card.id, contact.id, created=False)
    contact_cases.link_contact(session, card.id, contact.id)
    entry = HistoryEntry(
        card_id=card.id,
        type="call",
        occurred_at=call.started_at,
        logged_at=now,
        logged_by_id=user.id,
        inbound_id=inbound_id,
        dedupe_key=call.dedupe_key,
        data={
            "direction": call.direction,
            "outcome": call.outcome,
            "number": call.number,
            "duration_seconds": call.duration_seconds,
            "recording_url": call.recording_url,
            "employee": {"id": user.id, "name": user.name, "address": user.email},
            "provider": call.provider,
            "call_id": call.call_id,
            "contact_id": contact.id,
        },
    )
    session.add(entry)
    session.flush()
    if call.direction == "incoming" and call.outcome != "blocked":
        _incoming(session, card, call, contact, entry.id, now)
    elif call.direction == "outgoing":
        card.last_activity_at = now
        if call.outcome == "answered":
            called_back = _close_missed_calls(session, contact, user.id, now)
            entry.data = {**entry.data, "called_back": called_back}
    return Placed(card.id, contact.id, created=True)


def _incoming(
    session: Session, card: Card, call: Call, contact: Contact, history_id: int, now: datetime
) -> None:
    missed = call.outcome in UNANSWERED
    subject = f"{'Missed call' if missed else 'Call'} from {contact.name or call.number}"
    activity = activities.incoming_event(
        session,
        card,
        MISSED_CALL if missed else "call",
        subject,
        history_id,
        focus.MISSED_CALL if missed else focus.INCOMING_CALL,
        now,
    )
    activity.contacts.append(contact)


def _close_missed_calls(session: Session, contact: Contact, by: int, now: datetime) -> list[int]:
    waiting = session.scalars(
        select(Activity)
        .join(ActivityContact, ActivityContact.activity_id == Activity.id)
        .where(
            ActivityContact.contact_id == contact.id,
            Activity.type == MISSED_CALL,
            Activity.is_open,
        )
        .order_by(Activity.id)
        .with_for_update(of=Activity)
    ).all()
    for activity in waiting:
        activities.close_activity(session, activity, "done", True, by, now)
    return [a.id for a in waiting]
