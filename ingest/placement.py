"""Processing step shared by the inputs that land on a contact's card (calls, chat
messages, payments): claim the inbound item, place it with its channel's function, finish the item
as processed, rejected (with the reason) or unmatched; and attach an unmatched one later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import unit_of_work
from crm_core.errors import Conflict, CoreError, NotFound
from crm_core.models import InboundItem, InboundStatus, utcnow
from ingest import inbound
from ingest.errors import RejectedInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    card_id: int | None
    unmatched: str | None = None  # why it waits in the unmatched list (no card for it)
    note: str | None = None  # said on the processed item


# (session, item, now, card_id chosen by a user or None) -> Outcome; raises RejectedInput
# (the input is at fault) or a CoreError (the CRM refuses it).
Place = Callable[[Session, InboundItem, datetime, int | None], Outcome]


def process(sessions: sessionmaker[Session], inbound_id: int, place: Place) -> None:
    """One transaction: claim, place, finish. Running it twice changes nothing."""
    now = utcnow()
    with unit_of_work(sessions) as session:
        item = inbound.claim(session, inbound_id)
        if item is None:
            return
        try:
            with session.begin_nested():
                outcome = place(session, item, now, None)
        except (RejectedInput, CoreError) as exc:
            reason = exc.reason if isinstance(exc, RejectedInput) else str(exc)
            log.info("inbound item %s rejected: %s", item.id, reason)
            inbound.finish(item, InboundStatus.REJECTED, reason)
            return
        if outcome.unmatched is not None:
            inbound.finish(item, InboundStatus.UNMATCHED, outcome.unmatched)
            return
        item.card_id = outcome.card_id
        inbound.finish(item, InboundStatus.PROCESSED, outcome.note)


def attach(
    session: Session, item_id: int, card_id: int, places: Mapping[str, Place], now: datetime
) -> InboundItem:
    """Put an unmatched input on the card a user chose (`POST /api/unmatched/{id}/attach`),
    with every effect it would have had there."""
    item = inbound.lock(session, item_id)
    if item is None or item.channel not in places:
        raise NotFound(f"no unmatched input {item_id}")
    if item.status != InboundStatus.UNMATCHED.value:
        raise Conflict(f"inbound item {item_id} is {item.status}, not unmatched")
    try:
        outcome = places[item.channel](session, item, now, card_id)
    except RejectedInput as exc:
        raise Conflict(f"inbound item {item_id} cannot be read again: {exc.reason}") from None
    item.card_id = outcome.card_id
    inbound.finish(item, InboundStatus.PROCESSED, f"attached to card {card_id}")
    return item
