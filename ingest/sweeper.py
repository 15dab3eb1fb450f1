"""The sweeper: the database, not the broker, decides what still needs processing.

Re-sends every inbound item still `received` some time after its last enqueue (broker
down at accept time, worker killed, Redis restarted empty). Actors are safe to run twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from crm_core.models import utcnow
from ingest import inbound

log = logging.getLogger(__name__)

Enqueue = Callable[[str, int], None]


def sweep_once(sessions: sessionmaker[Session], enqueue: Enqueue, older_than: timedelta) -> int:
    """Re-send waiting items last enqueued before now - `older_than`; return how many."""
    due = inbound.due_for_sweep(sessions, utcnow() - older_than)
    for item_id, channel in due:
        enqueue(channel, item_id)
    if due:
        log.info("sweeper re-sent %d waiting inbound items", len(due))
    return len(due)


def run_sweeper(
    sessions: sessionmaker[Session],
    enqueue: Enqueue,
    *,
    interval_seconds: float,
    older_than: timedelta,
    stop: threading.Event,
) -> None:
    """Sweep every `interval_seconds` until `stop` is set; an error is logged, not fatal."""
    while not stop.is_set():
        try:
            sweep_once(sessions, enqueue, older_than)
        except Exception:
            log.exception("sweep failed; trying again in %.0f s", interval_seconds)
        stop.wait(interval_seconds)
