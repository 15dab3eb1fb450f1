"""The sweeper: the database, not the broker, decides what still needs doing.

Re-sends every inbound item still `received` some time after its last enqueue (broker
down at accept time, worker killed, Redis restarted empty; actors are safe to run twice),
and is the clock of time-driven focus: N minutes before a deadline and at the deadline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from crm_core import focus
from crm_core.db import unit_of_work
from crm_core.models import utcnow
from ingest import inbound
from ingest.retention import purge_batch

log = logging.getLogger(__name__)

Enqueue = Callable[[str, int], None]


def sweep_once(sessions: sessionmaker[Session], enqueue: Enqueue, older_than: timedelta) -> int:
    """Re-send waiting items last enqueued before now - `older_than`; return how many."""
    sent = inbound.resend_waiting(sessions, utcnow() - older_than, enqueue, backoff=older_than)
    if sent:
        log.info("sweeper re-sent %d waiting inbound items", sent)
    return sent


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
