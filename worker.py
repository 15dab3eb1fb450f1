"""The Dramatiq side of the pipeline: builds the broker and declares the actors.

The only module importing dramatiq. Actors receive an inbound id (never a payload) and
call one processing function; an error of ours is counted, retried, then parked as failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import TimeLimitExceeded as TimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import read_only
from crm_core.models import InboundItem
from ingest import inbound, logs, metrics
from ingest.mailbox.processing import process_email

log = logging.getLogger("worker")

QUEUE = "ingest"
TIME_LIMIT_MS = 120_000
Processor = Callable[[sessionmaker[Session], int], None]

# One processing function per inbound channel; `ingest.runtime` gives each its settings.
PROCESSORS: dict[str, Processor] = {"email": process_email}


def build_broker(url: str, namespace: str = "dramatiq") -> dramatiq.Broker:
    """A Redis broker (redis://, rediss://, unix://) or RabbitMQ (amqp://) for `url`."""
    broker: dramatiq.Broker
    if url.startswith(("amqp://", "amqps://")):
        broker = RabbitmqBroker(url=url)
    else:
        broker = RedisBroker(url=url, namespace=namespace)  # type: ignore[no-untyped-call]
    # First in, last out: its context spans the other middleware's hooks (retry lines too).
    broker.add_middleware(InboundLogContext(), before=type(broker.middleware[0]))
    return broker


class InboundLogContext(dramatiq.Middleware):
    """Every line logged while a message is processed (ours, the libraries', Dramatiq's
    own failure and retry lines) carries the message's inbound id and channel."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.args:
            logs.bind(message.args[0], message.actor_name.removeprefix("process_"))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        logs.unbind()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        logs.unbind()


@dataclass
class Pipeline:
    broker: dramatiq.Broker
    actors: dict[str, Any]

    def enqueue(self, channel: str, inbound_id: int) -> None:
        self.actors[channel].send(inbound_id)

    def start_worker(self, threads: int, poll_ms: int = 500) -> dramatiq.Worker:
        """Consume in background threads; `poll_ms` bounds how long `stop()` waits for them."""
        worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=poll_ms)
        worker.start()
        return worker


def declare_actors(
    broker: dramatiq.Broker,
    sessions: sessionmaker[Session],
    max_attempts: int,
    processors: dict[str, Processor] | None = None,
    lease: timedelta = timedelta(0),
    guarded: bool = True,
) -> Pipeline:
    """Bind one actor per channel to `broker`; they read and write through `sessions`.
    `lease`: how long a started attempt keeps its item from the sweeper (see begin_attempt).
    `guarded=False` runs the processors bare, without the attempt bookkeeping in the
    database (the benchmark's no-op anchor: Dramatiq's own cost only)."""
    actors: dict[str, Any] = {}
    for channel, processor in (processors or PROCESSORS).items():
        run = (
            _guarded(processor, sessions, max_attempts, lease, channel)
            if guarded
            else _bare(processor, sessions)
        )
        actors[channel] = dramatiq.actor(
            actor_name=f"process_{channel}",
            queue_name=QUEUE,
            broker=broker,
            # Attempts are counted in the database (inbound.begin_attempt), which parks an
            # item after the last; the broker's own retry count is only a backstop.
            max_retries=max_attempts,
            min_backoff=500,
            max_backoff=30_000,
            # A bound on one attempt (parsing hostile input included): past it the attempt
            # is interrupted, counted as failed, and retried or parked like any error of ours.
            time_limit=TIME_LIMIT_MS,
        )(run)
    return Pipeline(broker=broker, actors=actors)


def _bare(processor: Processor, sessions: sessionmaker[Session]) -> Callable[[int], None]:
    def run(inbound_id: int) -> None:
        processor(sessions, inbound_id)

    return run


def _guarded(
    processor: Processor,
    sessions: sessionmaker[Session],
    max_attempts: int,
    lease: timedelta,
    channel: str = "",
) -> Callable[[int], None]:
    def run(inbound_id: int) -> None:
        if not inbound.begin_attempt(sessions, inbound_id, max_attempts, lease):
            # Done already (a duplicate delivery), parked (its attempts are spent), or not
            # there at all: acknowledged, but the last is said and counted.
            if not _exists(sessions, inbound_id):
                log.warning(
                    "inbound item %s is not in this worker's database: dropped (is the "
                    "worker on the same database as the front doors? CRM_DATABASE_URL)",
                    inbound_id,
                )
                metrics.unknown(channel)
            return
        try:
            processor(sessions, inbound_id)
        # TimeLimitExceeded is a BaseException: named, so a timed-out attempt is recorded too.
        except (Exception, TimeLimitExceeded) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if inbound.record_failure(sessions, inbound_id, error, max_attempts):
                return
            log.warning("inbound item %s failed, will retry: %s", inbound_id, error)
            raise

    run.__name__ = getattr(processor, "__name__", "process")
    return run


def _exists(sessions: sessionmaker[Session], inbound_id: int) -> bool:
    with read_only(sessions) as session:
        found = session.scalar(select(InboundItem.id).where(InboundItem.id == inbound_id))
    return found is not None
