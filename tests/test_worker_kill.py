"""A worker killed after the 250 and before processing: the message is processed exactly once.

The worker is a real `crm-ingest worker` process, killed with SIGKILL while it holds the
message; a new worker and the sweeper then finish the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis
from sqlalchemy import Engine, text

from ingest.runtime import Runtime
from tests.helpers import (
    archive_address,
    counters,
    create_card,
    create_user,
    history,
    inbound_items,
    make_mail,
    send,
    wait_for,
)


def crm_env(runtime: Runtime, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `crm-ingest` process on this test's database and broker;
    `extra` settings as CRM_<NAME>."""
    s = runtime.settings
    return {
        **os.environ,
        "CRM_DATABASE_URL": s.effective_database_url(),
        "CRM_BROKER_URL": s.broker_url,
        "CRM_BROKER_NAMESPACE": s.broker_namespace,
        "CRM_DATA_DIR": str(tmp_path),
        "CRM_DB_LOCK_TIMEOUT_SECONDS": "60",
        "CRM_SWEEP_AFTER_SECONDS": "1",
        "CRM_SWEEP_INTERVAL_SECONDS": "0.2",
        "CRM_WORKER_THREADS": "1",
        "CRM_ATTEMPT_LEASE_SECONDS": "0",  # a killed worker's item is due after sweep_after
        "CRM_DNS_SERVERS": s.dns_servers,
        **{f"CRM_{name.upper()}": value for name, value in extra.items()},
    }


def crm_ingest(
    command: str, runtime: Runtime, tmp_path: Path, **extra: str
) -> subprocess.Popen[bytes]:
    """`crm-ingest <command>` as a process of its own (`-m module` runs that module)."""
    env = crm_env(runtime, tmp_path, **extra)
    if command.startswith("-m "):
        return subprocess.Popen([sys.executable, *command.split()], env=env)
    return subprocess.Popen([sys.executable, "-m", "ingest.cli", command], env=env)


@contextmanager
def card_locked(engine: Engine, card_id: int) -> Iterator[None]:
    """Processing cannot commit while this is held: the card row (PostgreSQL) or the database
    write lock (SQLite) is taken by another session."""
    with engine.connect() as conn:
        conn.begin()  # SQLite: BEGIN IMMEDIATE
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT id FROM cards WHERE id = :id FOR UPDATE"), {"id": card_id})
        try:
            yield
        finally:
            conn.rollback()


def queue_length(runtime: Runtime) -> int:
    client = redis.Redis.from_url(runtime.settings.broker_url)
    try:
        return int(client.llen(f"{runtime.settings.broker_namespace}:ingest"))
    finally:
        client.close()


def test_worker_killed_between_250_and_processing(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], tmp_path: Path
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    # Given a mail accepted with 250 while no worker runs: stored, and queued in the broker
    send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    assert queue_length(runtime) == 1

    with card_locked(runtime.engine, card["id"]):
        # When a worker takes the message and is killed before it could process it
        first = crm_ingest("worker", runtime, tmp_path)
        try:
            wait_for(lambda: queue_length(runtime) == 0, timeout=60, what="the worker's fetch")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
    assert [item["status"] for item in inbound_items(api)] == ["received"]
    assert history(api, card["id"]) == []

    # Then once a worker (and the sweeper) run again, the mail is processed exactly once
    second = crm_ingest("worker", runtime, tmp_path)
    sweeper = crm_ingest("sweeper", runtime, tmp_path)
    try:
        wait_for(lambda: inbound_items(api, "processed"), timeout=60, what="processing")
        assert len(history(api, card["id"])) == 1
        assert counters(api, anna["id"])["incoming"] == 1
    finally:
        for process in (second, sweeper):
            process.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        assert sweeper.wait(timeout=30) == 0
    assert len(history(api, card["id"])) == 1
