"""Chat processing step: inbound id -> `crm_core.chat.Message` or `Status` -> the card.

Runs in a worker through `ingest.placement` (one transaction: claim, record, finish). A
message whose sender has no open card (or only a visitor id) is kept as `unmatched` until
someone attaches it; a delivery status is processed, never a customer message.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from crm_core import chat
from crm_core.models import InboundItem
from ingest import placement, sources
from ingest.chat import payloads


def process_chat(sessions: sessionmaker[Session], inbound_id: int, default_region: str) -> None:
    placement.process(
        sessions,
        inbound_id,
        lambda session, item, now, card_id: place_chat(session, item, now, card_id, default_region),
    )


def place_chat(
    session: Session, item: InboundItem, now: datetime, card_id: int | None, default_region: str
) -> placement.Outcome:
    event = stored_event(session, item, default_region)
    if isinstance(event, chat.Status):
        on_card = chat.record_status(session, event)
        note = None if on_card else f"status of message {event.message_id}, not on a card yet"
        return placement.Outcome(on_card, note=note)
    placed = chat.record_message(session, event, item.id, now, card_id=card_id)
    if placed.card_id is not None:
        return placement.Outcome(placed.card_id)
    if placed.contact_id is None:
        why = "no phone number or e-mail to find the sender: attach it to a card"
    else:
        who = event.phone or event.email
        why = f"no open card for {who} (contact {placed.contact_id}): attach it to one"
    return placement.Outcome(None, unmatched=why)


def stored_event(session: Session, item: InboundItem, default_region: str) -> payloads.Event:
    source, region = sources.of_item(session, item, default_region)
    if source.kind == "widget":
        return payloads.widget_event(source.id, item.raw, region)
    if source.kind == "whatsapp":
        return payloads.whatsapp_event(source.id, item.raw, region)
    return payloads.twilio_event(source.id, item.raw, region, item.received_at)
