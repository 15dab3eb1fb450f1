"""The Dramatiq side of the pipeline: builds the broker, its middleware and the actors.

The only module importing dramatiq. Actors receive an inbound id (never a payload) and
call one processing function; `AttemptBookkeeping` counts each attempt in the database
and retries an error of ours, then parks the item as failed.
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

from crm_core.db import read_only
from crm_core.models import InboundItem
from ingest import inbound, logs
from ingest.metrics import Figures

# The worker's own lines keep the name they always had (operators filter on it).
log = logging.getLogger("worker")

QUEUE = "ingest"
TIME_LIMIT_MS = 120_000
Processor = Callable[[sessionmaker[Session], int], None]

# The actor option (see AttemptBookkeeping.actor_options) holding an actor's AttemptPolicy.
ATTEMPTS = "inbound_attempts"


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

    Before a message runs: `inbound.begin_attempt`; an item not waiting any more (done, a
    duplicate delivery; parked, its attempts spent; unknown, said and counted in `figures`)
    is skipped and acknowledged. After an error of ours (or an attempt interrupted by its
    time limit): `inbound.record_failure`; an item it parks is acknowledged, not retried
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
            if inbound.begin_attempt(
                policy.sessions, inbound_id, policy.max_attempts, policy.lease
            ):
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
                parked = inbound.record_failure(
                    policy.sessions, inbound_id, error, policy.max_attempts
                )
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
            # Attempts are counted in the database (inbound.begin_attempt), which parks an
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
