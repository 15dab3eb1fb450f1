"""The payment channel: a provider's `crm_core.payments.PaymentEvent` ->
`payments.record_payment` on its card.

Run by `ingest.processing` (one transaction: claim, place, finish). The payment's state is
updated even when no card is found; the event then waits as `unmatched` until someone
attaches it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from crm_core import payments
from crm_core.models import InboundItem
from ingest.provider import Medium, Outcome
from ingest.webhook_channel import WebhookChannel

PAYMENT = Medium("payment", "Payment", "payment", "payments", "Payments")


def place_payment(
    session: Session,
    item: InboundItem,
    event: payments.PaymentEvent,
    now: datetime,
    card_id: int | None,
) -> Outcome:
    placed = payments.record_payment(session, event, item.id, now, card_id=card_id)
    if placed.card_id is not None:
        return Outcome(placed.card_id, note=placed.card_ref_error)
    if placed.contact_id is None:
        why = "no card reference, e-mail or phone to find the payer's card: attach it to one"
    else:
        who = event.email or event.phone
        why = f"no open card for {who} (contact {placed.contact_id}): attach it to one"
    if placed.card_ref_error:
        why = f"{placed.card_ref_error}; {why}"
    return Outcome(None, unmatched=why)


CHANNEL = WebhookChannel(name="payment", hook="payments", place_input=place_payment)
