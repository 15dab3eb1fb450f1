"""Wires one process from its settings: database engine, group commit, counters, broker,
actors, embedded Redis. Every command of the CLI (and the tests) builds a Runtime;
nothing is bound at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import make_engine, make_session_factory
from ingest import processing
from ingest.embedded import EmbeddedRedis
from ingest.inbound import GroupCommit
from ingest.metrics import Figures
from ingest.pipeline import (
    AttemptBookkeeping,
    Pipeline,
    Processor,
    build_broker,
    declare_actors,
)
from ingest.provider import Channel
from ingest.registry import REGISTRY
from ingest.sealing import Sealer, SealingError, key_file
from ingest.settings import Settings


@dataclass
class Store:
    """The database side alone: enough for the commands that need no broker (`migrate`,
    `inbound`, `demo`, `mailbox`), which therefore never start or stop a Redis.

    `commits`: the front doors' writes (they get it from here); `figures`: the counters,
    which listen to `sessions`' commits."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    sealer: Sealer
    commits: GroupCommit
    figures: Figures

    def close(self) -> None:
        self.commits.close()
        self.engine.dispose()


@dataclass
class Runtime(Store):
    pipeline: Pipeline
    # Stopped by close() only if this process started it (EmbeddedRedis.owner).
    embedded_redis: EmbeddedRedis | None

    def close(self) -> None:
        self.commits.close()
        self.pipeline.broker.close()
        self.engine.dispose()
        if self.embedded_redis is not None:
            self.embedded_redis.close()


def open_store(settings: Settings, figures: Figures | None = None) -> Store:
    """Connect to the configured database (lazily: the first query connects). `figures`:
    the counters to count into (the CLI's, served before the store opens), else new ones."""
    try:
        sealer = Sealer(settings.secret_key or key_file(settings.secret_key_path))
    except SealingError as exc:
        raise ValueError(f"CRM_SECRET_KEY: {exc}") from None
    engine = make_engine(settings.effective_database_url(), settings.db_lock_timeout_seconds)
    # The company settings' defaults that depend on the channels run here.
    sessions = make_session_factory(engine, {"activity_types": REGISTRY.activity_types()})
    figures = figures or Figures()
    figures.listen(sessions)
    return Store(settings, engine, sessions, sealer, GroupCommit(sessions), figures)


def build_runtime(settings: Settings, figures: Figures | None = None) -> Runtime:
    """Connect to the configured database and broker: the embedded Redis of the data
    directory if none is configured (the running one, else one this process starts)."""
    store = open_store(settings, figures)
    sessions = store.sessions
    embedded = None
    broker_url = settings.broker_url
    if not broker_url:
        embedded = EmbeddedRedis(settings.embedded_redis_path)
        broker_url = embedded.url
    broker = build_broker(
        broker_url,
        namespace=settings.broker_namespace,
        bookkeeping=AttemptBookkeeping(store.figures),
    )
    pipeline = declare_actors(
        broker,
        sessions,
        settings.max_attempts,
        lease=timedelta(seconds=settings.attempt_lease_seconds),
        processors={
            name: _processor(channel, settings) for name, channel in REGISTRY.channels.items()
        },
    )
    return Runtime(
        store.settings,
        store.engine,
        sessions,
        store.sealer,
        store.commits,
        store.figures,
        pipeline,
        embedded,
    )


def _processor(channel: Channel, settings: Settings) -> Processor:
    """One channel's processing step, as an actor runs it: (sessions, inbound id)."""

    def process(sessions: sessionmaker[Session], inbound_id: int) -> None:
        processing.process(sessions, channel, settings, inbound_id)

    process.__name__ = f"process_{channel.name}"
    return process
