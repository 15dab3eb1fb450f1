"""Past one machine: two SMTP front doors, two worker processes and a sweeper, as separate
`crm-ingest` processes sharing one database and one broker (Redis, and RabbitMQ), take 50
concurrent mails to one card (and 10 of them again) exactly once, with exact counters.

Issue 9 ("past one machine"); docs/operations.md "Running several processes".
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from crm_core import counters
from crm_core.company import COUNTER_MODES
from crm_core.db import read_only
from crm_core.models import User, utcnow
from ingest.runtime import Runtime
from tests.support.cli import free_port, listening, processes
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    history,
    inbound_items,
    make_mail,
    send,
    wait_for,
)

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"
EVENTS = 50


@pytest.mark.timeout(300)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_two_front_doors_and_two_workers_take_each_mail_once(
    api: httpx.Client, runtime: Runtime, tmp_path: Path, broker: str
) -> None:
    s = runtime.settings
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    env = {
        "CRM_DATABASE_URL": s.database_url,
        "CRM_BROKER_URL": s.broker_url if broker == "redis" else RABBITMQ,
        "CRM_BROKER_NAMESPACE": s.broker_namespace,
        "CRM_DATA_DIR": str(tmp_path),
        "CRM_ARCHIVE_DOMAIN": "archive.test",
        "CRM_WORKER_THREADS": "4",
        "CRM_SWEEP_INTERVAL_SECONDS": "0.5",
        "CRM_SWEEP_AFTER_SECONDS": "3",
        "CRM_LOG_LEVEL": "WARNING",
        # 50 mails from one sender to one card: beyond the loop limit, not this test's subject.
        "CRM_LOOP_LIMIT_COUNT": "1000",
        "CRM_DNS_SERVERS": s.dns_servers,
    }
    ports = [free_port(), free_port()]
    doors = [(["smtp"], {**env, "CRM_SMTP_PORT": str(port)}) for port in ports]
    workers = [(["worker"], env), (["worker"], env), (["sweeper"], env)]
    mails = [
        make_mail("anna@example.com", address, subject=f"Mail {n:02d}", body=f"Body {n}")
        for n in range(EVENTS)
    ]
    with processes(doors + workers):
        wait_for(lambda: all(listening(p) for p in ports), timeout=60, what="two SMTP doors")
        started = time.perf_counter()
        # 50 at once through both doors, then 10 of them again through the other door
        jobs = [(ports[n % 2], mail) for n, mail in enumerate(mails)]
        jobs += [(ports[(n + 1) % 2], mails[n]) for n in range(10)]
        with ThreadPoolExecutor(max_workers=EVENTS) as pool:
            for done in [
                pool.submit(send, ("127.0.0.1", port), mail, address, "anna@example.com")
                for port, mail in jobs
            ]:
                done.result()

        def finished() -> bool:
            items = inbound_items(api)
            return len(items) == EVENTS and all(i["status"] == "processed" for i in items)

        wait_for(finished, timeout=180, what="50 mails processed by the worker processes")
        print(
            f"\n{broker}: {EVENTS} mails through 2 doors and 2 workers in "
            f"{time.perf_counter() - started:.2f} s"
        )

    # Each mail once on the card, and counters equal to a recount
    subjects = sorted(e["subject"] for e in history(api, card["id"]) if e["type"] == "email")
    assert subjects == [f"Mail {n:02d}" for n in range(EVENTS)]
    assert api.get(f"/api/users/{anna['id']}/counters").json()["incoming"] == EVENTS
    with read_only(runtime.sessions) as session:
        for user in session.scalars(select(User)):
            for mode in COUNTER_MODES:
                now = utcnow()
                assert counters.read_counters(session, user.id, now, mode) == counters.recount(
                    session, user, mode, now
                )
