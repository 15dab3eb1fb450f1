"""Wires one process from its settings: database engine, broker, actors, embedded Redis.

Every command of the CLI (and the tests) builds a Runtime; nothing is bound at import time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import make_engine, make_session_factory
from ingest import inbound
from ingest.calllog.processing import process_call
from ingest.chat.processing import process_chat
from ingest.embedded import EmbeddedRedis
from ingest.mailbox.processing import AttachmentLimits, LoopLimit, process_email
from ingest.payments.processing import process_payment
from ingest.sealing import Sealer, SealingError, key_file
from ingest.settings import Settings
from worker import Pipeline, build_broker, declare_actors


@dataclass
class Store:
    """The database side alone: enough for the commands that need no broker (`migrate`,
    `inbound`, `demo`, `mailbox`), which therefore never start or stop a Redis."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    sealer: Sealer

    def close(self) -> None:
        inbound.close_store(self.sessions)
        self.engine.dispose()


@dataclass
class Runtime(Store):
    pipeline: Pipeline
    # Stopped by close() only if this process started it (EmbeddedRedis.owner).
    embedded_redis: EmbeddedRedis | None

    def close(self) -> None:
        inbound.close_store(self.sessions)
        self.pipeline.broker.close()
        self.engine.dispose()
        if self.embedded_redis is not None:
            self.embedded_redis.close()


def open_store(settings: Settings) -> Store:
    """Connect to the configured database (lazily: the first query connects)."""
    try:
        sealer = Sealer(settings.secret_key or key_file(settings.secret_key_path))
    except SealingError as exc:
        raise ValueError(f"CRM_SECRET_KEY: {exc}") from None
    engine = make_engine(settings.effective_database_url(), settings.db_lock_timeout_seconds)
    return Store(settings, engine, make_session_factory(engine), sealer)


def build_runtime(settings: Settings) -> Runtime:
    """Connect to the configured database and broker: the embedded Redis of the data
    directory if none is configured (the running one, else one this process starts)."""
    store = open_store(settings)
    sessions = store.sessions
    embedded = None
    broker_url = settings.broker_url
    if not broker_url:
        embedded = EmbeddedRedis(settings.embedded_redis_path)
        broker_url = embedded.url
    broker = build_broker(broker_url, namespace=settings.broker_namespace)
    limits = AttachmentLimits(settings.max_attachment_bytes, settings.max_attachments_bytes)
    loops = LoopLimit(
        settings.loop_limit_count, timedelta(seconds=settings.loop_limit_window_seconds)
    )
    pipeline = declare_actors(
        broker,
        sessions,
        settings.max_attempts,
        lease=timedelta(seconds=settings.attempt_lease_seconds),
        processors={
            "email": functools.partial(process_email, limits=limits, loops=loops),
            "call": functools.partial(process_call, default_region=settings.default_region),
            "chat": functools.partial(process_chat, default_region=settings.default_region),
            "payment": functools.partial(process_payment, default_region=settings.default_region),
        },
    )
    return Runtime(settings, store.engine, sessions, store.sealer, pipeline, embedded)
