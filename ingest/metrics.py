"""Prometheus figures of the pipeline (the only module importing prometheus_client).

Counted where the database says so: accepted/rejected when a front door's store commits,
processed/rejected/unmatched/failed (and the end-to-end latency) when the transaction that
finishes an item commits. Each runtime builds its `Figures` and has them listen to its own
sessionmaker's commits; the queue depth is read at scrape time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
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
from sqlalchemy.orm import Session, SessionTransaction, object_session, sessionmaker

from crm_core.db import read_only
from crm_core.models import InboundItem, InboundStatus, utcnow

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Outcomes waiting in a session for its commit: (counter, channel, received_at or None).
_PENDING = "crm_metrics_pending"
Outcome = tuple[str, str, datetime | None]


class Figures:
    """One runtime's counters, in a registry of their own (a second runtime in the same
    process, as in the tests, counts apart); the process's own figures (CPU, memory) stay
    in prometheus_client's default registry and are exposed beside them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        accepted = Counter(
            "crm_inbound_accepted",
            "Inputs stored by a front door to be processed",
            ["channel"],
            registry=r,
        )
        rejected = Counter(
            "crm_inbound_rejected",
            "Inputs refused after they were stored: by the front door (e.g. IMAP mail for no "
            "card) or by the worker (e.g. an automatic reply)",
            ["channel"],
            registry=r,
        )
        processed = Counter(
            "crm_inbound_processed", "Inputs the worker put on their card", ["channel"], registry=r
        )
        unmatched = Counter(
            "crm_inbound_unmatched",
            "Inputs understood but with no card, left to attach",
            ["channel"],
            registry=r,
        )
        failed = Counter(
            "crm_inbound_failed",
            "Inputs parked as failed after the last attempt",
            ["channel"],
            registry=r,
        )
        held = Counter(
            "crm_inbound_held",
            "Inputs held unprocessed as a suspected mail loop",
            ["channel"],
            registry=r,
        )
        self._unknown = Counter(
            "crm_inbound_unknown",
            "Messages naming an inbound id this worker's database does not hold, acknowledged "
            "and dropped (a worker on the wrong database, or a broker shared by two deployments)",
            ["channel"],
            registry=r,
        )
        self._latency = Histogram(
            "crm_inbound_latency_seconds",
            "Seconds from an input's storing to its processing (observed for processed inputs)",
            ["channel"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        # Keyed by what `stored` and `finishing` leave pending: "accepted" or a status.
        self._counters: dict[str, Counter] = {
            "accepted": accepted,
            InboundStatus.PROCESSED.value: processed,
            InboundStatus.REJECTED.value: rejected,
            InboundStatus.UNMATCHED.value: unmatched,
            InboundStatus.FAILED.value: failed,
            InboundStatus.HELD.value: held,
        }

    def listen(self, sessions: sessionmaker[Session]) -> None:
        """Count what the sessions of `sessions` (this runtime's) leave pending, once their
        transaction commits; a rollback drops it."""
        event.listen(sessions, "after_commit", self._committed)
        event.listen(sessions, "after_transaction_end", _ended)

    def unknown(self, channel: str) -> None:
        """A worker was given an inbound id its database does not hold."""
        self._unknown.labels(channel).inc()

    def exposition(self, sessions: sessionmaker[Session]) -> bytes:
        """The text exposition for `/metrics`: the counters and the queue depth."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_AppFigures(self.registry, sessions))
        return generate_latest(registry)

    def serve(self, host: str, port: int) -> None:
        """Serve the counters at http://host:port/metrics from a daemon thread."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_AppFigures(self.registry, None))
        start_http_server(port, addr=host, registry=registry)

    def _committed(self, session: Session) -> None:
        root = session.get_transaction()
        if root is not None and root.is_active:
            return  # a savepoint was released; the outcome is not durable yet
        now = utcnow()
        for what, channel, received_at in session.info.pop(_PENDING, []):
            self._counters[what].labels(channel).inc()
            if what == InboundStatus.PROCESSED.value and received_at is not None:
                self._latency.labels(channel).observe(max(0.0, (now - received_at).total_seconds()))


def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)  # rolled back (a commit has counted them already)


def stored(session: Session, rows: Iterable[Mapping[str, Any]]) -> None:
    """The rows a front door's store is inserting in `session` (new ones only, not
    duplicates): counted as accepted or rejected once it commits."""
    pending: list[Outcome] = session.info.setdefault(_PENDING, [])
    for row in rows:
        accepted = row["status"] == InboundStatus.RECEIVED.value
        pending.append(
            ("accepted" if accepted else InboundStatus.REJECTED.value, row["channel"], None)
        )


def finishing(item: InboundItem, status: InboundStatus) -> None:
    """`item` is about to leave `received` for `status`: counted once its transaction
    commits (a rolled-back attempt counts nothing). Later moves (attaching an unmatched
    input to a card) are a user's doing, not the pipeline's, and are not counted. An item
    in no session has no transaction, nor runtime, to count it: it is not counted."""
    if item.status != InboundStatus.RECEIVED.value:
        return
    session = object_session(item)
    if session is not None:
        outcome: Outcome = (status.value, item.channel, item.received_at)
        session.info.setdefault(_PENDING, []).append(outcome)


class _AppFigures(Collector):
    """The process's figures, a runtime's counters and (given `sessions`) the queue depth,
    read from the database per scrape."""

    def __init__(self, counters: CollectorRegistry, sessions: sessionmaker[Session] | None) -> None:
        self.counters = counters
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self.counters.collect()
        if self.sessions is None:
            return
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
