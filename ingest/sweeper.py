"""Beside the pipeline: the database, not the broker, decides what still needs doing. Re-sends
items still `received` after their last send (`resend_waiting`, with a backoff when quiet);
is the clock of time-driven focus and of retention."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from crm_core import focus
from crm_core.db import unit_of_work
from crm_core.models import InboundItem, InboundStatus, utcnow
from ingest.retention import purge_batch

log = logging.getLogger(__name__)

Enqueue = Callable[[str, int], None]


def sweep_once(sessions: sessionmaker[Session], enqueue: Enqueue, older_than: timedelta) -> int:
    """Re-send waiting items last enqueued before now - `older_than`; return how many."""
    sent = resend_waiting(sessions, utcnow() - older_than, enqueue, backoff=older_than)
    if sent:
        log.info("sweeper re-sent %d waiting inbound items", sent)
    return sent


# A quiet re-send (no attempt started since the last send) pushes the next one back by
# `backoff` x this, by how many quiet re-sends came before: after the first re-send of an
# item stuck behind a backlog, the gaps double (2, 4, 8 x the sweep delay) and stay at 8 x.
QUIET_BACKOFF_STEPS = (1, 3, 7)


def quiet_backoff(quiet_resends: int, backoff: timedelta) -> timedelta:
    """How much later than the plain sweep delay the next re-send of an item comes, after
    `quiet_resends` earlier re-sends that no attempt followed."""
    return backoff * QUIET_BACKOFF_STEPS[min(quiet_resends, len(QUIET_BACKOFF_STEPS) - 1)]


def resend_waiting(
    sessions: sessionmaker[Session],
    enqueued_before: datetime,
    enqueue: Callable[[str, int], None],
    limit: int = 500,
    backoff: timedelta = timedelta(0),
) -> int:
    """Send again up to `limit` waiting items last enqueued before `enqueued_before`; return
    how many the broker took (each counted in `resends`). No row lock is held while the
    broker is called; if it fails, the items not sent stay due and the error is raised.

    An item re-sent while no attempt started since its last send most likely waits in the
    broker behind a backlog (a re-send only joins the queue's tail): its next re-send comes
    `quiet_backoff` later, so a long backlog is not multiplied by re-sends of itself.
    """
    now = utcnow()
    with unit_of_work(sessions) as session:
        rows = session.execute(
            select(InboundItem.id, InboundItem.channel, InboundItem.quiet_resends)
            .where(
                InboundItem.status == InboundStatus.RECEIVED.value,
                InboundItem.enqueued_at < enqueued_before,
            )
            .order_by(InboundItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:  # this round's: another sweeper does not take them too
            session.execute(
                update(InboundItem)
                .where(InboundItem.id.in_([row.id for row in rows]))
                .values(enqueued_at=now)
            )
    sent: list[int] = []
    try:
        for row in rows:
            enqueue(row.channel, row.id)
            sent.append(row.id)
    finally:
        with unit_of_work(sessions) as session:
            if sent:
                session.execute(
                    update(InboundItem)
                    .where(InboundItem.id.in_(sent))
                    .values(resends=InboundItem.resends + 1)
                )
                # ... and, unless an attempt started meanwhile (it moved enqueued_at), its
                # next re-send is pushed back by the quiet re-sends before this one.
                later: dict[int, list[int]] = {}
                for row in rows[: len(sent)]:
                    later.setdefault(row.quiet_resends, []).append(row.id)
                for quiet, ids in later.items():
                    session.execute(
                        update(InboundItem)
                        .where(InboundItem.id.in_(ids), InboundItem.enqueued_at == now)
                        .values(
                            quiet_resends=InboundItem.quiet_resends + 1,
                            enqueued_at=now + quiet_backoff(quiet, backoff),
                        )
                    )
            unsent = [row.id for row in rows[len(sent) :]]
            if unsent:  # due again at the next sweep
                session.execute(
                    update(InboundItem)
                    .where(InboundItem.id.in_(unsent), InboundItem.enqueued_at == now)
                    .values(enqueued_at=enqueued_before - timedelta(microseconds=1))
                )
    return len(sent)


def focus_due(sessions: sessionmaker[Session], now: datetime) -> int:
    """Focus the cards whose activities reached a focus moment; return how many fired."""
    with unit_of_work(sessions) as session:
        fired = focus.fire_due(session, now)
    if fired:
        log.info("focused the cards of %d activities at their deadline moments", fired)
    return fired


def purge_expired(sessions: sessionmaker[Session], retention: timedelta, now: datetime) -> int:
    """Retention: delete the raw bytes of inputs finished more than `retention` ago (in
    batches, until none is left); return how many."""
    total = 0
    while purged := purge_batch(sessions, now - retention, now):
        total += purged
    return total


RETENTION_EVERY = timedelta(minutes=10)


def run_sweeper(
    sessions: sessionmaker[Session],
    enqueue: Enqueue,
    *,
    interval_seconds: float,
    older_than: timedelta,
    stop: threading.Event,
    retention: timedelta | None = None,
) -> None:
    """Sweep every `interval_seconds` until `stop` is set, and apply `retention` (None:
    keep raw inputs forever) every ten minutes; an error is logged, not fatal (the next
    round retries: a database outage must not kill the clock)."""
    last_purge: datetime | None = None
    while not stop.is_set():
        try:
            sweep_once(sessions, enqueue, older_than)
            now = utcnow()
            focus_due(sessions, now)
            if retention is not None and (
                last_purge is None or now - last_purge >= RETENTION_EVERY
            ):
                purge_expired(sessions, retention, now)
                last_purge = now
        except Exception:
            log.exception("sweep failed; trying again in %.0f s", interval_seconds)
        stop.wait(interval_seconds)
