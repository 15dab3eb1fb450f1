"""The one processing step of every channel (e-mail, calls, chat, payments), run by a
worker for an inbound id: prepare the stored input outside any transaction, then in one
transaction claim the item, place the input on its card and finish the item as processed,
rejected, held or unmatched. Also puts an unmatched input on the card a person chose.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import read_only, unit_of_work
from crm_core.errors import Conflict, CoreError, NotFound
from crm_core.models import InboundItem, InboundStatus, utcnow
from ingest import inbound
from ingest.errors import RejectedInput
from ingest.provider import Channel, Outcome
from ingest.settings import Settings

log = logging.getLogger(__name__)


def process(
    sessions: sessionmaker[Session], channel: Channel, settings: Settings, inbound_id: int
) -> None:
    """Running it twice changes nothing: an item already finished is not claimed again."""
    with read_only(sessions) as session:
        stored = session.get(InboundItem, inbound_id)
        if stored is None or stored.status != InboundStatus.RECEIVED.value:
            return
        prepared: Any = None
        refusal = None
        try:
            prepared = channel.prepare(session, stored, settings)
        except RejectedInput as exc:
            refusal = exc.reason
    now = utcnow()
    with unit_of_work(sessions) as session:
        item = inbound.claim(session, inbound_id)
        if item is None:
            return
        if refusal is not None:
            _reject(item, refusal)
            return
        channel.annotate(item, prepared)
        try:
            with session.begin_nested():
                outcome = channel.place(session, item, prepared, now, None)
        except RejectedInput as exc:
            _reject(item, exc.reason)
            return
        except CoreError as exc:
            _reject(item, str(exc))
            return
        _finish(item, outcome)


def attach(
    session: Session,
    item_id: int,
    card_id: int,
    channels: Mapping[str, Channel],
    settings: Settings,
) -> InboundItem:
    """Put an unmatched input on the card a user chose (`POST /api/unmatched/{id}/attach`),
    with every effect it would have had there."""
    item = inbound.lock(session, item_id)
    if item is None or item.channel not in channels:
        raise NotFound(f"no unmatched input {item_id}")
    if item.status != InboundStatus.UNMATCHED.value:
        raise Conflict(f"inbound item {item_id} is {item.status}, not unmatched")
    channel = channels[item.channel]
    try:
        prepared = channel.prepare(session, item, settings)
        outcome = channel.place(session, item, prepared, utcnow(), card_id)
    except RejectedInput as exc:
        raise Conflict(f"inbound item {item_id} cannot be read again: {exc.reason}") from None
    if outcome.card_id is None:
        raise Conflict(f"inbound item {item_id} cannot be put on a card")
    item.card_id = outcome.card_id
    inbound.finish(item, InboundStatus.PROCESSED, f"attached to card {card_id}")
    return item


def _finish(item: InboundItem, outcome: Outcome) -> None:
    if outcome.held is not None:
        log.warning("inbound item %s %s", item.id, outcome.held)
        inbound.finish(item, InboundStatus.HELD, outcome.held)
    elif outcome.unmatched is not None:
        inbound.finish(item, InboundStatus.UNMATCHED, outcome.unmatched)
    else:
        item.card_id = outcome.card_id
        inbound.finish(item, InboundStatus.PROCESSED, outcome.note)


def _reject(item: InboundItem, reason: str) -> None:
    log.info("inbound item %s rejected: %s", item.id, reason)
    inbound.finish(item, InboundStatus.REJECTED, reason)
