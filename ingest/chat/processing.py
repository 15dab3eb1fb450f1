"""The chat channel: a provider's `crm_core.chat.Message` or `Status` -> the card.

Run by `ingest.processing` (one transaction: claim, place, finish). A message whose sender
has no open card (or only a visitor id) is kept as `unmatched` until someone attaches it; a
delivery status is processed, never a customer message.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from crm_core import chat
from crm_core.models import InboundItem
from ingest.provider import Medium, Outcome
from ingest.webhook_channel import WebhookChannel

CHAT = Medium("chat", "Chat", "chat message", "chat", "Chat")
WHATSAPP = Medium("whatsapp", "WhatsApp", "WhatsApp message", "whatsapp", "WhatsApp")
SMS = Medium("sms", "SMS", "SMS", "sms", "SMS")


def place_chat(
    session: Session,
    item: InboundItem,
    event: chat.Message | chat.Status,
    now: datetime,
    card_id: int | None,
) -> Outcome:
    if isinstance(event, chat.Status):
        on_card = chat.record_status(session, event)
        note = None if on_card else f"status of message {event.message_id}, not on a card yet"
        return Outcome(on_card, note=note)
    placed = chat.record_message(session, event, item.id, now, card_id=card_id)
    if placed.card_id is not None:
        return Outcome(placed.card_id)
    if placed.contact_id is None:
        why = "no phone number or e-mail to find the sender: attach it to a card"
    else:
        who = event.phone or event.email
        why = f"no open card for {who} (contact {placed.contact_id}): attach it to one"
    return Outcome(None, unmatched=why)


CHANNEL = WebhookChannel(name="chat", hook="chat", place_input=place_chat)
