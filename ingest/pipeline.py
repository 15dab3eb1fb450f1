"""Between the inbound store and processing (the only module importing dramatiq):
`send_stored` hands stored ids to the broker, one actor per channel runs its processing
step, and `AttemptBookkeeping` counts each attempt in the database, then parks the item.
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
from dramatiq.middleware import (
    MiddlewareError,
    Retries,
    SkipMessage,
    default_middleware,
)
from dramatiq.middleware import TimeLimitExceeded as TimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import read_only, unit_of_work
from crm_core.models import InboundItem, InboundStatus, utcnow
from ingest import logs
from ingest.metrics import Figures
from ingest.processing import finish, lock

# The worker's own lines keep the name they always had (operators filter on it), and so do
# the lines about an inbound item's sending and attempts (once in ingest/inbound.py).
log = logging.getLogger("worker")
# The lines of an inbound item's way (stored, sent, attempts) keep the logger operators
# filter on, wherever the code that says them lives.
item_log = logging.getLogger("ingest.inbound")

QUEUE = "ingest"
TIME_LIMIT_MS = 120_000
Processor = Callable[[sessionmaker[Session], int], None]

# The actor option (see AttemptBookkeeping.actor_options) holding an actor's AttemptPolicy.
ATTEMPTS = "inbound_attempts"


def send_stored(enqueue: Callable[[str, int], None], channel: str, ids: list[int]) -> None:
    """After the store, at every front door: send each id to the workers, logging under it.
    Stored is what matters: if the broker is down, the sweeper sends them once it is back."""
    for item_id in ids:
        with logs.inbound_context(item_id, channel):
            item_log.info("inbound item %s stored, sending it to the workers", item_id)
            try:
                enqueue(channel, item_id)
            except Exception:
                item_log.warning("broker unavailable; inbound item %s left to the sweeper", item_id)


def build_broker(
    url: str,
    namespace: str = "dramatiq",
    *,
    bookkeeping: AttemptBookkeeping | None = None,
) -> dramatiq.Broker:
    """A Redis broker (redis://, rediss://, unix://) or RabbitMQ (amqp://) for `url`.

    With `bookkeeping`, it takes the place of Dramatiq's Retries; without, the broker's
    actors run their processors bare (the benchmark's no-op anchor: Dramatiq's own cost
    only; a broker only sent to)."""
    middleware = [m() for m in default_middleware]
    if bookkeeping is not None:
        middleware = [m for m in middleware if not isinstance(m, Retries)] + [bookkeeping]
    broker: dramatiq.Broker
    if url.startswith(("amqp://", "amqps://")):
        broker = RabbitmqBroker(url=url, middleware=middleware)
    else:
        broker = RedisBroker(url=url, namespace=namespace, middleware=middleware)  # type: ignore[no-untyped-call]
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


@dataclass(frozen=True)
class AttemptPolicy:
    """How one actor's attempts are kept: in `sessions`' database, at most `max_attempts`;
    `lease`: how long a started attempt keeps its item from the sweeper (begin_attempt)."""

    sessions: sessionmaker[Session]
    max_attempts: int
    lease: timedelta
    channel: str


class AttemptNotBegun(MiddlewareError):
    """The attempt could not be counted (the database failed): the message is retried as
    if its processor had failed, and nothing is recorded."""


class AttemptBookkeeping(Retries):
    """Dramatiq's Retries, with each attempt counted in the database first.

    Before a message runs: `begin_attempt`; an item not waiting any more (done, a
    duplicate delivery; parked, its attempts spent; unknown, said and counted in `figures`)
    is skipped and acknowledged. After an error of ours (or an attempt interrupted by its
    time limit): `record_failure`; an item it parks is acknowledged, not retried
    (which Retries alone cannot do: it retries or fails the message); any other is retried
    by Retries. Actors without an AttemptPolicy (ATTEMPTS) get plain Retries."""

    def __init__(self, figures: Figures) -> None:
        super().__init__()
        self.figures = figures
        # Retries' own lines keep their logger, as with the plain middleware.
        self.logger = logging.getLogger("dramatiq.middleware.retries.Retries")

    @property
    def actor_options(self) -> set[str]:
        return {*super().actor_options, ATTEMPTS}

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        policy = _policy(broker, message)
        if policy is None:
            return
        inbound_id = message.args[0]
        try:
            if begin_attempt(policy.sessions, inbound_id, policy.max_attempts, policy.lease):
                return
            # Done already (a duplicate delivery), parked (its attempts are spent), or not
            # there at all: acknowledged, but the last is said and counted.
            known = _exists(policy.sessions, inbound_id)
        except Exception as exc:
            raise AttemptNotBegun(f"inbound item {inbound_id}: {exc}") from exc
        if not known:
            log.warning(
                "inbound item %s is not in this worker's database: dropped (is the "
                "worker on the same database as the front doors? CRM_DATABASE_URL)",
                inbound_id,
            )
            self.figures.unknown(policy.channel)
        raise SkipMessage(f"inbound item {inbound_id} is not waiting")

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        policy = _policy(broker, message)
        # TimeLimitExceeded is a BaseException: named, so a timed-out attempt is recorded too.
        if (
            policy is not None
            and isinstance(exception, Exception | TimeLimitExceeded)
            and not isinstance(exception, AttemptNotBegun)
        ):
            inbound_id = message.args[0]
            error = f"{type(exception).__name__}: {exception}"
            try:
                parked = record_failure(policy.sessions, inbound_id, error, policy.max_attempts)
            except Exception:
                log.exception("inbound item %s: its failed attempt was not recorded", inbound_id)
                parked = False
            if parked:
                return  # acknowledged: neither retried nor failed in the broker
            log.warning("inbound item %s failed, will retry: %s", inbound_id, error)
        super().after_process_message(broker, message, result=result, exception=exception)  # type: ignore[no-untyped-call]


def _policy(broker: dramatiq.Broker, message: Any) -> AttemptPolicy | None:
    actor = broker.actors.get(message.actor_name)
    policy = actor.options.get(ATTEMPTS) if actor is not None else None
    return policy if isinstance(policy, AttemptPolicy) else None


def _exists(sessions: sessionmaker[Session], inbound_id: int) -> bool:
    with read_only(sessions) as session:
        found = session.scalar(select(InboundItem.id).where(InboundItem.id == inbound_id))
    return found is not None


def begin_attempt(
    sessions: sessionmaker[Session],
    item_id: int,
    max_attempts: int,
    lease: timedelta = timedelta(0),
) -> bool:
    """Count an attempt before it starts; False if the item is not waiting any more.

    Counting at the start, in a commit of its own, is what bounds an input that kills its
    worker (out of memory, a crash in a parser, kill -9): nothing after the kill is ever
    recorded, so a count kept at the end would let the sweeper re-send it forever. Once
    `max_attempts` attempts have started and none finished, the item is parked as failed.
    """
    with unit_of_work(sessions) as session:
        item = lock(session, item_id)
        if item is None:
            item_log.warning("inbound item %s does not exist", item_id)
            return False
        if item.status != InboundStatus.RECEIVED.value:
            item_log.info("inbound item %s already %s", item_id, item.status)  # a redelivery
            return False
        if item.attempts >= max_attempts:
            died = f"{item.attempts} attempts started and none finished (the worker stopped)"
            item.error = f"{item.error}; {died}" if item.error else died
            finish(item, InboundStatus.FAILED)
            item_log.error("inbound item %s failed for good: %s", item_id, died)
            return False
        item.attempts += 1
        item.quiet_resends = 0  # it reached a worker: the sweeper's next re-send is not late
        # A lease: this attempt has it until its time limit has passed (an attempt is
        # interrupted then); only after that plus sweep_after does the sweeper send it again,
        # so a slow attempt is never doubled by a re-send. record_failure ends the lease.
        item.enqueued_at = utcnow() + lease
        return True


def record_failure(
    sessions: sessionmaker[Session], item_id: int, error: str, max_attempts: int
) -> bool:
    """Keep the error of a failed attempt (counted by `begin_attempt`); park the item as
    failed once `max_attempts` are spent.

    Returns True when the item is parked (stop retrying), False when it should be retried.
    """
    with unit_of_work(sessions) as session:
        item = lock(session, item_id)
        if item is None or item.status != InboundStatus.RECEIVED.value:
            return True
        item.error = error[:4000]
        item.enqueued_at = utcnow()  # the broker retries it: not the sweeper's to re-send yet
        if item.attempts >= max_attempts:
            finish(item, InboundStatus.FAILED)
            item_log.error(
                "inbound item %s failed for good after %s attempts", item_id, item.attempts
            )
            return True
        return False


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
    processors: dict[str, Processor],
    lease: timedelta = timedelta(0),
) -> Pipeline:
    """Bind one actor per channel of `processors` to `broker`; they read and write through
    `sessions`. On a broker with AttemptBookkeeping each attempt is counted (at most
    `max_attempts`; `lease`: see begin_attempt); on one without, processors run bare."""
    counted = any(isinstance(m, AttemptBookkeeping) for m in broker.middleware)
    actors: dict[str, Any] = {}
    for channel, processor in processors.items():
        options: dict[str, Any] = {}
        if counted:
            options[ATTEMPTS] = AttemptPolicy(sessions, max_attempts, lease, channel)
        actors[channel] = dramatiq.actor(
            actor_name=f"process_{channel}",
            queue_name=QUEUE,
            broker=broker,
            # Attempts are counted in the database (begin_attempt), which parks an
            # item after the last; the broker's own retry count is only a backstop.
            max_retries=max_attempts,
            min_backoff=500,
            max_backoff=30_000,
            # A bound on one attempt (parsing hostile input included): past it the attempt
            # is interrupted, counted as failed, and retried or parked like any error of ours.
            time_limit=TIME_LIMIT_MS,
            **options,
        )(_bare(processor, sessions))
    return Pipeline(broker=broker, actors=actors)


def _bare(processor: Processor, sessions: sessionmaker[Session]) -> Callable[[int], None]:
    def run(inbound_id: int) -> None:
        processor(sessions, inbound_id)

    run.__name__ = getattr(processor, "__name__", "process")
    return run
