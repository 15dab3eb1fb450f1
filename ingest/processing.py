"""The pipeline's step after the broker, one for every channel: prepare the stored input
outside any transaction, then claim the item, place it on its card and finish it. Owns the
item's lifecycle (`load`, `claim`, `lock`, `finish`); `attach` places an unmatched one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import read_only, unit_of_work
from crm_core.errors import Conflict, CoreError, NotFound
from crm_core.models import InboundItem, InboundStatus, utcnow
from ingest import metrics
from ingest.errors import RejectedInput
from ingest.provider import Channel, Outcome
from ingest.settings import Settings

log = logging.getLogger(__name__)
# An item's claim lines keep the logger they always had (once in ingest/inbound.py).
item_log = logging.getLogger("ingest.inbound")


def load(sessions: sessionmaker[Session], item_id: int) -> InboundItem | None:
    with read_only(sessions) as session:
        return session.get(InboundItem, item_id)


def claim(session: Session, item_id: int) -> InboundItem | None:
    """Lock the item for this transaction; None if it is unknown or no longer waiting.

    The row lock makes two workers given the same id (a redelivery, a sweep) take turns;
    the second then finds it finished and does nothing.
    """
    item = lock(session, item_id)
    if item is None:
        item_log.warning("inbound item %s does not exist", item_id)
        return None
    if item.status != InboundStatus.RECEIVED.value:
        item_log.info("inbound item %s already %s", item_id, item.status)
        return None
    return item


def lock(session: Session, item_id: int) -> InboundItem | None:
    """The item, its row held for the transaction, whatever its status."""
    return session.scalar(select(InboundItem).where(InboundItem.id == item_id).with_for_update())


def finish(item: InboundItem, status: InboundStatus, reason: str | None = None) -> None:
    metrics.finishing(item, status)
    item.status = status.value
    item.reason = reason
    item.finished_at = utcnow()


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
        item = claim(session, inbound_id)
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
    now: datetime,
) -> InboundItem:
    """Put an unmatched input on the card a user chose (`POST /api/unmatched/{id}/attach`),
    with every effect it would have had there."""
    item = lock(session, item_id)
    if item is None or item.channel not in channels:
        raise NotFound(f"no unmatched input {item_id}")
    if item.status != InboundStatus.UNMATCHED.value:
        raise Conflict(f"inbound item {item_id} is {item.status}, not unmatched")
    channel = channels[item.channel]
    try:
        prepared = channel.prepare(session, item, settings)
        outcome = channel.place(session, item, prepared, now, card_id)
    except RejectedInput as exc:
        raise Conflict(f"inbound item {item_id} cannot be read again: {exc.reason}") from None
    item.card_id = outcome.card_id
    finish(item, InboundStatus.PROCESSED, f"attached to card {card_id}")
    return item


def _finish(item: InboundItem, outcome: Outcome) -> None:
    if outcome.held is not None:
        log.warning("inbound item %s %s", item.id, outcome.held)
        finish(item, InboundStatus.HELD, outcome.held)
    elif outcome.unmatched is not None:
        finish(item, InboundStatus.UNMATCHED, outcome.unmatched)
    else:
        item.card_id = outcome.card_id
        finish(item, InboundStatus.PROCESSED, outcome.note)


def _reject(item: InboundItem, reason: str) -> None:
    log.info("inbound item %s rejected: %s", item.id, reason)
    finish(item, InboundStatus.REJECTED, reason)
