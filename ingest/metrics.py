"""Prometheus figures of the pipeline (the only module importing prometheus_client).

Counted where the database says so: accepted/rejected when a front door's store commits,
processed/rejected/unmatched/failed (and the end-to-end latency) when the transaction that
finishes an item commits. Counters are per process; the queue depth is read at scrape time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, object_session, sessionmaker

from crm_core.db import read_only
from crm_core.models import InboundItem, InboundStatus, utcnow

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

ACCEPTED = Counter(
    "crm_inbound_accepted", "Inputs stored by a front door to be processed", ["channel"]
)
REJECTED = Counter(
    "crm_inbound_rejected",
    "Inputs refused after they were stored: by the front door (e.g. IMAP mail for no card) "
    "or by the worker (e.g. an automatic reply)",
    ["channel"],
)
PROCESSED = Counter("crm_inbound_processed", "Inputs the worker put on their card", ["channel"])
UNMATCHED = Counter(
    "crm_inbound_unmatched", "Inputs understood but with no card, left to attach", ["channel"]
)
FAILED = Counter(
    "crm_inbound_failed", "Inputs parked as failed after the last attempt", ["channel"]
)
HELD = Counter("crm_inbound_held", "Inputs held unprocessed as a suspected mail loop", ["channel"])
UNKNOWN = Counter(
    "crm_inbound_unknown",
    "Messages naming an inbound id this worker's database does not hold, acknowledged and "
    "dropped (a worker on the wrong database, or a broker shared by two deployments)",
    ["channel"],
)
LATENCY = Histogram(
    "crm_inbound_latency_seconds",
    "Seconds from an input's storing to its processing (observed for processed inputs)",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

_FINISHED = {
    InboundStatus.PROCESSED.value: PROCESSED,
    InboundStatus.REJECTED.value: REJECTED,
    InboundStatus.UNMATCHED.value: UNMATCHED,
    InboundStatus.FAILED.value: FAILED,
    InboundStatus.HELD.value: HELD,
}
_PENDING = "crm_metrics_pending"
_listening = threading.Lock()


def stored(rows: Iterable[Mapping[str, Any]]) -> None:
    """The rows a front door's store just committed (new ones only, not duplicates)."""
    for row in rows:
        if row["status"] == InboundStatus.RECEIVED.value:
            ACCEPTED.labels(row["channel"]).inc()
        else:
            REJECTED.labels(row["channel"]).inc()


def unknown(channel: str) -> None:
    """A worker was given an inbound id its database does not hold."""
    UNKNOWN.labels(channel).inc()


def finishing(item: InboundItem, status: InboundStatus) -> None:
    """`item` is about to leave `received` for `status`: counted once its transaction
    commits (a rolled-back attempt counts nothing). Later moves (attaching an unmatched
    input to a card) are a user's doing, not the pipeline's, and are not counted."""
    if item.status != InboundStatus.RECEIVED.value:
        return
    outcome = (item.channel, status.value, item.received_at)
    session = object_session(item)
    if session is None:
        _count([outcome])
        return
    _listen()
    session.info.setdefault(_PENDING, []).append(outcome)


def _listen() -> None:
    with _listening:
        if not event.contains(Session, "after_commit", _committed):
            event.listen(Session, "after_commit", _committed)
            event.listen(Session, "after_transaction_end", _ended)


def _committed(session: Session) -> None:
    root = session.get_transaction()
    if root is not None and root.is_active:
        return  # a savepoint was released; the outcome is not durable yet
    _count(session.info.pop(_PENDING, []))


def _ended(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)  # rolled back (a commit has counted them already)


def _count(outcomes: list[tuple[str, str, Any]]) -> None:
    now = utcnow()
    for channel, status, received_at in outcomes:
        _FINISHED[status].labels(channel).inc()
        if status == InboundStatus.PROCESSED.value:
            LATENCY.labels(channel).observe(max(0.0, (now - received_at).total_seconds()))


class _AppFigures(Collector):
    """This process's counters plus the queue depth, read from the database per scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        try:
            with read_only(self.sessions) as session:
                depth = session.scalar(
                    select(func.count())
                    .select_from(InboundItem)
                    .where(InboundItem.status == InboundStatus.RECEIVED.value)
                )
        except SQLAlchemyError as exc:
            log.warning("queue depth not exposed: the database is unavailable: %s", exc)
            return
        yield GaugeMetricFamily(
            "crm_inbound_queue_depth",
            "Inputs stored and still waiting to be processed (all processes)",
            value=depth or 0,
        )


def exposition(sessions: sessionmaker[Session]) -> bytes:
    """The text exposition for `/metrics`: the counters and the queue depth."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AppFigures(sessions))
    return generate_latest(registry)


def serve(host: str, port: int) -> None:
    """Serve this process's counters at http://host:port/metrics from a daemon thread."""
    start_http_server(port, addr=host)
