"""What operators do to stored inputs (the CLI's `inbound`/`reprocess`, the HTTP API's
inbound endpoints): list them, send them through processing again, put them on legal hold.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, defer, sessionmaker

from crm_core.db import read_only, unit_of_work
from crm_core.errors import Conflict, NotFound
from crm_core.models import InboundItem, InboundStatus
from ingest.processing import lock

# Statuses an operator may send through processing again, from the start.
REPROCESSABLE = (InboundStatus.FAILED, InboundStatus.REJECTED, InboundStatus.HELD)


def reprocess(sessions: sessionmaker[Session], item_id: int, now: datetime) -> InboundItem:
    """Put a failed, rejected or held item back to `received` with its attempts reset (the
    caller then enqueues it). A held item is released: the loop limit is not applied again.
    The last error stays visible until processing succeeds."""
    with unit_of_work(sessions) as session:
        item = lock(session, item_id)
        if item is None:
            raise NotFound(f"inbound item {item_id} does not exist")
        if item.status not in REPROCESSABLE:
            raise Conflict(
                f"inbound item {item_id} is {item.status}; only failed, rejected or held "
                "items can be processed again"
                + (" (attach an unmatched one to a card)" if item.status == "unmatched" else "")
            )
        if item.purged_at is not None:
            raise Conflict(f"inbound item {item_id}'s raw input was deleted by retention")
        if item.status == InboundStatus.HELD.value:
            item.meta = {**item.meta, "released": True}
        item.status = InboundStatus.RECEIVED.value
        item.reason = None
        item.attempts = 0
        item.quiet_resends = 0
        item.finished_at = None
        item.enqueued_at = now
        session.flush()
        session.expunge(item)
        return item


def set_legal_hold(sessions: sessionmaker[Session], item_id: int, hold: bool) -> InboundItem:
    with unit_of_work(sessions) as session:
        item = lock(session, item_id)
        if item is None:
            raise NotFound(f"inbound item {item_id} does not exist")
        if hold and item.purged_at is not None:
            raise Conflict(f"inbound item {item_id}'s raw input was already deleted by retention")
        item.legal_hold = hold
        session.flush()
        session.expunge(item)
        return item


def list_items(
    sessions: sessionmaker[Session], status: str | None, limit: int = 100
) -> list[InboundItem]:
    with read_only(sessions) as session:
        query = (
            select(InboundItem)
            .options(defer(InboundItem.raw))
            .order_by(InboundItem.id.desc())
            .limit(limit)
        )
        if status:
            query = query.where(InboundItem.status == status)
        return list(session.scalars(query))
