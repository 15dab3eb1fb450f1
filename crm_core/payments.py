"""Payments of orders on cards (SPEC "Incoming activities": order payment; "Which card?"):
the use case a payment worker calls with a provider-neutral `PaymentEvent`, whatever order
a payment's events (paid, failed, refunded) arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, lazyload

from crm_core import activities, contact_cases, focus
from crm_core.calls import card_for_contact
from crm_core.chat import find_contact
from crm_core.errors import NotFound
from crm_core.models import Card, Contact, HistoryEntry, Payment, dedupe_key

# A payment's lifecycle: a state never goes back to a lower rank (a late "succeeded" after
# its refund is history, not the payment's state). Of two events of one rank, the one with
# more refunded, then the later one, wins.
STATUS_RANK = {
    "pending": 0,
    "failed": 1,
    "succeeded": 2,
    "partially_refunded": 3,
    "refunded": 4,
}
REFUNDS = ("partially_refunded", "refunded")

# ISO 4217 minor units where they are not 2 (only for the words a user reads: amounts are
# stored and compared as the integers the provider sent).
_ZERO = ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI")
_EXPONENT = {
    **dict.fromkeys((*_ZERO, "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


@dataclass(frozen=True)
class PaymentEvent:
    """One event of one payment (paid, failed, refunded...), whatever the provider."""

    source_id: int
    provider: str  # stripe | payment (our own signed JSON)
    payment_id: str  # the provider's payment: every event of it lands with it
    event_key: str  # this event among the payment's: "succeeded", "failed:<id>", "refunded:<n>"
    status: str  # a key of STATUS_RANK
    occurred_at: datetime
    amount: int | None  # minor units, as sent (never a float)
    currency: str | None  # ISO 4217, upper case
    amount_refunded: int = 0
    reason: str | None = None  # why it failed or was refunded
    email: str | None = None  # the payer
    phone: str | None = None  # E.164
    payer_name: str = ""
    card_ref: int | None = None  # an explicit card id from the payment's metadata
    order_ref: str | None = None
    url: str | None = None  # the payment at the provider (e.g. Stripe's dashboard)
    details: dict[str, Any] = field(default_factory=dict)  # the provider's own (event id...)

    @property
    def dedupe_key(self) -> str:
        return dedupe_key("payment", self.source_id, self.payment_id, self.event_key)

    @property
    def order(self) -> tuple[int, int, datetime]:
        return (STATUS_RANK[self.status], self.amount_refunded, self.occurred_at)


@dataclass(frozen=True)
class Placed:
    card_id: int | None  # None: no card for it (the unmatched list)
    contact_id: int | None
    created: bool
    card_ref_error: str | None = None  # an explicit card reference that named no card


def money(amount: int | None, currency: str | None) -> str:
    """`1999, "EUR"` -> "19.99 EUR"; `500, "JPY"` -> "500 JPY"."""
    if amount is None:
        return "an amount not given"
    code = (currency or "").upper()
    exponent = _EXPONENT.get(code, 2)
    sign, units = ("-" if amount < 0 else ""), abs(amount)
    if exponent == 0:
        return f"{sign}{units} {code}".strip()
    whole, minor = divmod(units, 10**exponent)
    return f"{sign}{whole}.{minor:0{exponent}d} {code}".strip()


def record_payment(
    session: Session,
    event: PaymentEvent,
    inbound_id: int | None,
    now: datetime,
    card_id: int | None = None,
) -> Placed:
    """Apply one event to its payment, and put it on its card (`card_id` when a user chose
    it, else: the card named by the payment, the card of its order or of its earlier events,
    the payer's card by the SPEC's rule).

    The payment's state moves forward only (`STATUS_RANK`), so it ends right whatever the
    order of its events; this is done even when no card is found. Every event is a history
    entry "payment"; only the event that is the payment's current state acts: a success
    opens an incoming activity (unread, counter, focus), a failure or a refund focuses the
    card with its reason; a stale one (a success already refunded) is history only. Running
    it again for the same event changes nothing.
    """
    row = _payment_row(session, event.source_id, event.payment_id)
    _apply(row, event, now)
    contact = find_contact(session, event.email, event.phone, event.payer_name)
    contact_id = contact.id if contact is not None else None
    error = None
    if card_id is None:
        card_id, error = _card_of(session, event, row, contact)
        if card_id is None:
            return Placed(None, contact_id, created=False, card_ref_error=error)
    card = session.scalar(
        select(Card).where(Card.id == card_id).options(lazyload(Card.contacts)).with_for_update()
    )
    if card is None:
        raise NotFound(f"card {card_id} does not exist")
    cards = {card.id} | ({row.card_id} if row.card_id is not None else set())
    existing = session.scalar(
        select(HistoryEntry.id)
        .where(HistoryEntry.card_id.in_(cards), HistoryEntry.dedupe_key == event.dedupe_key)
        .limit(1)
    )
    if existing is not None:
        return Placed(row.card_id or card.id, contact_id, created=False)
    row.card_id = card.id
    if contact is not None:
        contact_cases.link_contact(session, card.id, contact.id)
    current = row.status_event == event.event_key
    entry = HistoryEntry(
        card_id=card.id,
        type="payment",
        occurred_at=event.occurred_at,
        logged_at=now,
        inbound_id=inbound_id,
        dedupe_key=event.dedupe_key,
        data={
            "provider": event.provider,
            "source_id": event.source_id,
            "payment_id": event.payment_id,
            "status": event.status,
            "amount": event.amount,
            "currency": event.currency,
            "amount_refunded": event.amount_refunded,
            "amount_text": money(event.amount, event.currency),  # e.g. "12.50 EUR", for people
            "reason": event.reason,
            "url": event.url,
            "payer": {"name": event.payer_name, "email": event.email, "phone": event.phone},
            "contact_id": contact_id,
            "order_ref": event.order_ref,
            "card_ref_error": error,
            "event_key": event.event_key,
            **event.details,
        },
    )
    session.add(entry)
    session.flush()
    _show_state(session, row)
    if current:
        _act(session, card, event, contact, entry.id, now)
    return Placed(card.id, contact_id, created=True, card_ref_error=error)


def _apply(row: Payment, event: PaymentEvent, now: datetime) -> None:
    """Merge what the event knows into the payment; its state only moves forward."""
    if row.amount is None and event.amount is not None:
        row.amount, row.currency = event.amount, event.currency
    if row.order_ref is None and event.order_ref:
        row.order_ref = event.order_ref[:200]
    if row.status_at is None or event.order > (
        row.status_rank,
        row.amount_refunded,
        row.status_at,
    ):
        row.status, row.status_rank = event.status, STATUS_RANK[event.status]
        row.status_event, row.status_at = event.event_key[:200], event.occurred_at
        row.reason = event.reason
        row.amount_refunded = max(row.amount_refunded, event.amount_refunded)
    row.updated_at = now


def _card_of(
    session: Session, event: PaymentEvent, row: Payment, contact: Contact | None
) -> tuple[int | None, str | None]:
    """The card an event goes to, and why a card reference it carries was not followed."""
    error = None
    if event.card_ref is not None:
        if session.get(Card, event.card_ref) is not None:
            return event.card_ref, None
        error = f"card {event.card_ref} named by the payment does not exist"
    if event.order_ref:
        of_order = session.scalar(
            select(Payment.card_id)
            .join(Card, Card.id == Payment.card_id)
            # Order numbers of two payment systems may collide: one source's orders only.
            .where(Payment.order_ref == event.order_ref[:200], Payment.source_id == event.source_id)
            .order_by(Payment.updated_at.desc())
            .limit(1)
        )
        if of_order is not None:
            return of_order, error
    if row.card_id is not None and session.get(Card, row.card_id) is not None:
        return row.card_id, error
    if contact is not None:
        return card_for_contact(session, contact.id), error
    return None, error


def _act(
    session: Session,
    card: Card,
    event: PaymentEvent,
    contact: Contact | None,
    history_id: int,
    now: datetime,
) -> None:
    amount = money(event.amount, event.currency)
    if event.status == "succeeded":
        who = event.payer_name or event.email or event.phone or "a customer"
        order = f" (order {event.order_ref})" if event.order_ref else ""
        activity = activities.incoming_event(
            session,
            card,
            "payment",
            f"Payment of {amount} from {who}{order}"[:500],
            history_id,
            f"payment received: {amount}",
            now,
        )
        if contact is not None:
            activity.contacts.append(contact)
    elif event.status == "failed" or event.status in REFUNDS:
        if event.status in REFUNDS:
            amount = money(event.amount_refunded, event.currency)
        words = "payment failed" if event.status == "failed" else "payment refunded"
        because = f": {event.reason}" if event.reason else ""
        card.last_activity_at = now
        focus.focus_card(card, f"{words}: {amount}{because}", now)
    # pending: history only, nothing to do yet


def _show_state(session: Session, row: Payment) -> None:
    """Every entry of the payment on its card shows the payment's current state."""
    entries = session.scalars(
        select(HistoryEntry)
        .where(HistoryEntry.card_id == row.card_id, HistoryEntry.type == "payment")
        .order_by(HistoryEntry.id)
        .with_for_update()
    ).all()
    for entry in entries:
        data = entry.data
        if data.get("source_id") != row.source_id or data.get("payment_id") != row.payment_id:
            continue
        entry.data = {
            **data,
            "payment_status": row.status,
            "payment_reason": row.reason,
            "payment_amount_refunded": row.amount_refunded,
            # False for an event the payment has moved past (a success since refunded)
            "current": data.get("event_key") == row.status_event,
        }


def _payment_row(session: Session, source_id: int, payment_id: str) -> Payment:
    """The payment's row, locked for this transaction; made by its first event (two events
    of one payment processed at once: the second insert waits for the first and does
    nothing)."""
    key = payment_id[:200]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(Payment)
        .values(source_id=source_id, payment_id=key, status_rank=-1, amount_refunded=0)
        .on_conflict_do_nothing()
    )
    return session.scalars(
        select(Payment)
        .where(Payment.source_id == source_id, Payment.payment_id == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
