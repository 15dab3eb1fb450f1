"""Call processing step: inbound id -> `crm_core.calls.Call` -> `calls.record_call`.

Runs in a worker, in one transaction like mail: claim, record, finish. A call whose number
has no open card is kept as `unmatched` (its contact is made) until someone attaches it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from crm_core import calls
from crm_core.db import unit_of_work
from crm_core.errors import Conflict, CoreError, NotFound
from crm_core.models import InboundItem, InboundStatus, Source, utcnow
from ingest import inbound
from ingest.calllog import payloads
from ingest.errors import RejectedInput

log = logging.getLogger(__name__)


def process_call(sessions: sessionmaker[Session], inbound_id: int, default_region: str) -> None:
    now = utcnow()
    with unit_of_work(sessions) as session:
        item = inbound.claim(session, inbound_id)
        if item is None:
            return
        try:
            with session.begin_nested():
                placed = calls.record_call(
                    session, stored_call(session, item, default_region), item.id, now
                )
        except (RejectedInput, CoreError) as exc:
            reason = exc.reason if isinstance(exc, RejectedInput) else str(exc)
            log.info("inbound item %s rejected: %s", item.id, reason)
            inbound.finish(item, InboundStatus.REJECTED, reason)
            return
        if placed.card_id is None:
            inbound.finish(
                item,
                InboundStatus.UNMATCHED,
                f"no open card for this number (contact {placed.contact_id}): attach it to one",
            )
            return
        item.card_id = placed.card_id
        inbound.finish(item, InboundStatus.PROCESSED)


def attach_call(
    session: Session, item_id: int, card_id: int, default_region: str, now: datetime
) -> InboundItem:
    """Put an unmatched call on the card a user chose (`POST /api/unmatched/{id}/attach`)."""
    item = inbound.lock(session, item_id)
    if item is None or item.channel != "call":
        raise NotFound(f"no unmatched call {item_id}")
    if item.status != InboundStatus.UNMATCHED.value:
        raise Conflict(f"inbound item {item_id} is {item.status}, not unmatched")
    try:
        call = stored_call(session, item, default_region)
    except RejectedInput as exc:
        raise Conflict(f"inbound item {item_id} cannot be read again: {exc.reason}") from None
    placed = calls.record_call(session, call, item.id, now, card_id=card_id)
    item.card_id = placed.card_id
    inbound.finish(item, InboundStatus.PROCESSED, f"attached to card {card_id}")
    return item


def stored_call(session: Session, item: InboundItem, default_region: str) -> calls.Call:
    source = session.get(Source, item.meta.get("source_id"))
    if source is None:
        raise RejectedInput("its source no longer exists")
    region = source.settings.get("default_region") or default_region
    if source.kind == "calllog":
        return payloads.calllog_call(source.id, item.raw, region)
    call = payloads.twilio_call(source.id, item.raw, source.settings, region, item.received_at)
    if call is None:
        raise RejectedInput("a progress report, not a call")
    return call
