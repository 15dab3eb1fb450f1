"""The call channel: a provider's `Call` -> `crm_core.calls.record_call` on its card.

Run by `ingest.processing` (one transaction: claim, place, finish). A call whose number has
no open card is kept as `unmatched` (its contact is made) until someone attaches it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from crm_core import calls
from crm_core.models import InboundItem
from ingest.provider import Medium, Outcome
from ingest.webhook_channel import WebhookChannel

CALL = Medium("call", "Call", "call", "calls", "Calls")


def place_call(
    session: Session, item: InboundItem, call: calls.Call, now: datetime, card_id: int | None
) -> Outcome:
    placed = calls.record_call(session, call, item.id, now, card_id=card_id)
    if placed.card_id is None:
        return Outcome(
            None,
            unmatched=f"no open card for this number (contact {placed.contact_id}): "
            "attach it to one",
        )
    return Outcome(placed.card_id)


CHANNEL = WebhookChannel(name="call", hook="calllog", place_input=place_call)
