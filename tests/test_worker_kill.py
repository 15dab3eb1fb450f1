"""A worker killed after the 250 and before processing: the message is processed exactly once.

The worker is a real `crm-ingest worker` process, killed with SIGKILL while it holds the
message; a new worker and the sweeper then finish the job.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import redis

from ingest.runtime import Runtime
from tests.support.helpers import (
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
from tests.support.locks import card_locked
from tests.support.workers import crm_ingest


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
