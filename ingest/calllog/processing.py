"""Call processing step: inbound id -> `crm_core.calls.Call` -> `calls.record_call`.

Runs in a worker through `ingest.placement` (one transaction: claim, record, finish). A
call whose number has no open card is kept as `unmatched` (its contact is made) until
someone attaches it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from crm_core import calls
from crm_core.models import InboundItem
from ingest import placement, sources
from ingest.calllog import payloads
from ingest.errors import RejectedInput


def process_call(sessions: sessionmaker[Session], inbound_id: int, default_region: str) -> None:
    placement.process(
        sessions,
        inbound_id,
        lambda session, item, now, card_id: place_call(session, item, now, card_id, default_region),
    )


def place_call(
    session: Session, item: InboundItem, now: datetime, card_id: int | None, default_region: str
) -> placement.Outcome:
    call = stored_call(session, item, default_region)
    placed = calls.record_call(session, call, item.id, now, card_id=card_id)
    if placed.card_id is None:
        return placement.Outcome(
            None,
            unmatched=f"no open card for this number (contact {placed.contact_id}): "
            "attach it to one",
        )
    return placement.Outcome(placed.card_id)


def stored_call(session: Session, item: InboundItem, default_region: str) -> calls.Call:
    source, region = sources.of_item(session, item, default_region)
    if source.kind == "calllog":
        return payloads.calllog_call(source.id, item.raw, region)
    call = payloads.twilio_call(source.id, item.raw, source.settings, region, item.received_at)
    if call is None:
        raise RejectedInput("a progress report, not a call")
    return call
