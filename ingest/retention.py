"""Retention of raw inputs, applied by the sweeper: the bytes of finished inputs are
deleted after CRM_RAW_RETENTION_DAYS, except those on legal hold.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import unit_of_work
from crm_core.models import Card, InboundItem, InboundStatus

log = logging.getLogger(__name__)

# Retention deletes the raw input of these once they are finished (failed, held and
# unmatched ones wait for a person and are kept).
RETAINED_UNTIL_EXPIRY = (InboundStatus.PROCESSED.value, InboundStatus.REJECTED.value)


def purge_batch(
    sessions: sessionmaker[Session], finished_before: datetime, now: datetime, limit: int = 500
) -> int:
    """Delete the raw bytes of up to `limit` items finished before `finished_before`, except
    those on legal hold (their own, or their card's); return how many were purged."""
    held_cards = select(Card.id).where(Card.legal_hold.is_(True))
    with unit_of_work(sessions) as session:
        ids = list(
            session.scalars(
                select(InboundItem.id)
                .where(
                    InboundItem.status.in_(RETAINED_UNTIL_EXPIRY),
                    InboundItem.finished_at < finished_before,
                    InboundItem.purged_at.is_(None),
                    InboundItem.legal_hold.is_(False),
                    or_(InboundItem.card_id.is_(None), InboundItem.card_id.not_in(held_cards)),
                )
                .order_by(InboundItem.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if ids:
            session.execute(
                update(InboundItem).where(InboundItem.id.in_(ids)).values(raw=b"", purged_at=now)
            )
    if ids:
        log.info("retention deleted the raw input of %d inbound items", len(ids))
    return len(ids)
