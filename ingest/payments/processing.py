"""Payment processing step: inbound id -> `crm_core.payments.PaymentEvent` ->
`payments.record_payment`.

Runs in a worker through `ingest.placement` (one transaction: claim, record, finish). The
payment's state is updated even when no card is found; the event then waits as
`unmatched` until someone attaches it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from crm_core import payments
from crm_core.models import InboundItem
from ingest import placement, sources
from ingest.errors import RejectedInput
from ingest.payments import payloads


def process_payment(sessions: sessionmaker[Session], inbound_id: int, default_region: str) -> None:
    placement.process(
        sessions,
        inbound_id,
        lambda session, item, now, card_id: place_payment(
            session, item, now, card_id, default_region
        ),
    )


def place_payment(
    session: Session, item: InboundItem, now: datetime, card_id: int | None, default_region: str
) -> placement.Outcome:
    event = stored_payment(session, item, default_region)
    placed = payments.record_payment(session, event, item.id, now, card_id=card_id)
    if placed.card_id is not None:
        return placement.Outcome(placed.card_id, note=placed.card_ref_error)
    if placed.contact_id is None:
        why = "no card reference, e-mail or phone to find the payer's card: attach it to one"
    else:
        who = event.email or event.phone
        why = f"no open card for {who} (contact {placed.contact_id}): attach it to one"
    if placed.card_ref_error:
        why = f"{placed.card_ref_error}; {why}"
    return placement.Outcome(None, unmatched=why)


def stored_payment(
    session: Session, item: InboundItem, default_region: str
) -> payments.PaymentEvent:
    source, region = sources.of_item(session, item, default_region)
    if source.kind == "stripe":
        event = payloads.stripe_payment(source.id, item.raw, region)
        if event is None:
            raise RejectedInput("a Stripe event that is no payment of an order")
        return event
    return payloads.our_payment(source.id, item.raw, region)
