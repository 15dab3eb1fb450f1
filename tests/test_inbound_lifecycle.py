"""Inputs that cannot be processed: poison (failed, bounded even when it kills its worker),
re-processing (API and CLI), the loop limit (held), and retention with legal hold."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

import worker as worker_module
from crm_core.db import unit_of_work
from crm_core.models import InboundItem, utcnow
from ingest import inbound, sweeper
from ingest.mailbox.processing import LoopLimit, process_email
from ingest.runtime import Runtime
from tests.helpers import (
    archive_address,
    create_card,
    create_user,
    grant,
    history,
    inbound_items,
    make_mail,
    send,
    wait_for,
)
from tests.test_worker_kill import card_locked, crm_env, crm_ingest


def item(api: httpx.Client, item_id: int) -> dict[str, Any]:
    response = api.get(f"/api/inbound/{item_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_an_input_that_kills_its_worker_is_failed_after_the_attempts_not_resent_forever(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], tmp_path: Path
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    [stored] = inbound_items(api)
    sweeping = crm_ingest("sweeper", runtime, tmp_path)
    try:
        # A worker dies (SIGKILL) inside the processing of this mail, three times: the
        # sweeper re-sends it after each death, and each start is counted before it runs.
        for attempt in (1, 2, 3):
            poisoned = crm_ingest("-m tests.poison_worker", runtime, tmp_path, max_attempts="3")
            assert poisoned.wait(timeout=60) == -signal.SIGKILL
            assert item(api, stored["id"])["attempts"] == attempt
            assert item(api, stored["id"])["status"] == "received"
        # The next delivery finds three attempts started and none finished: parked as failed,
        # and this worker lives on.
        survivor = crm_ingest("-m tests.poison_worker", runtime, tmp_path, max_attempts="3")
        try:
            failed = wait_for(
                lambda: inbound_items(api, "failed"), timeout=60, what="the item parked as failed"
            )
            assert survivor.poll() is None
        finally:
            survivor.send_signal(signal.SIGTERM)
            survivor.wait(timeout=30)
    finally:
        sweeping.send_signal(signal.SIGTERM)
        sweeping.wait(timeout=30)
    assert failed[0]["id"] == stored["id"]
    assert "3 attempts started and none finished" in failed[0]["error"]
    assert history(api, card["id"]) == []
    shown = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "inbound", str(stored["id"])],
        env=crm_env(runtime, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(shown.stdout)["status"] == "failed"

    # `crm-ingest reprocess ID` sends it again; a healthy worker records it, once.
    done = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "reprocess", str(stored["id"])],
        env=crm_env(runtime, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"inbound item {stored['id']} sent to processing again" in done.stdout
    healthy = runtime.pipeline.start_worker(threads=1, poll_ms=100)
    try:
        wait_for(lambda: inbound_items(api, "processed"), timeout=30, what="reprocessing")
    finally:
        healthy.stop()
    assert len(history(api, card["id"])) == 1
    assert item(api, stored["id"])["attempts"] == 1


def test_reprocess_refuses_what_is_not_failed_rejected_or_held(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None, tmp_path: Path
) -> None:
    anna = create_user(api, "anna@example.com")
    address = archive_address(api, create_card(api, anna["id"])["id"])
    send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    [processed] = wait_for(lambda: inbound_items(api, "processed"), what="processing")
    answer = api.post(f"/api/inbound/{processed['id']}/reprocess")
    assert answer.status_code == 409
    assert "is processed; only failed, rejected or held" in answer.json()["detail"]
    assert api.post("/api/inbound/999999/reprocess").status_code == 404
    done = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "reprocess", str(processed["id"])],
        env=crm_env(runtime, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "only failed, rejected or held" in done.stderr


def test_a_rejected_mail_is_recorded_once_its_cause_is_fixed_and_it_is_reprocessed(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    # A colleague not yet in the CRM forwards a mail: rejected, with the reason.
    send(smtp_server, make_mail("boris@example.com", address), address, "boris@example.com")
    [rejected] = wait_for(lambda: inbound_items(api, "rejected"), what="the refusal")
    assert "boris@example.com" in rejected["reason"]
    # The admin creates the user (with rights on the card), then re-processes the mail.
    boris = create_user(api, "boris@example.com")
    api.patch(f"/api/cards/{card['id']}", json={"responsible_id": boris["id"]}).raise_for_status()
    answer = api.post(f"/api/inbound/{rejected['id']}/reprocess")
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "received"
    wait_for(lambda: inbound_items(api, "processed"), what="reprocessing")
    assert [entry["type"] for entry in history(api, card["id"])].count("email") == 1


def test_mails_processed_at_once_are_counted_one_after_the_other_for_the_loop_limit(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int]
) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time: two cannot race here")
    # Given a limit of one mail per sender and address, and two mails from Anna stored
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    for n in (1, 2):
        send(smtp_server, make_mail("anna@example.com", address, f"m{n}"), address, "a@x")
    ids = [i["id"] for i in inbound_items(api)]
    one = LoopLimit(count=1, window=timedelta(hours=2))
    # When two workers process them at the same moment (both wait for the card to be free)
    with card_locked(runtime.engine, card["id"]):
        workers = [
            threading.Thread(
                target=process_email, args=(runtime.sessions, i), kwargs={"loops": one}
            )
            for i in ids
        ]
        for w in workers:
            w.start()

        def both_waiting() -> bool:
            with runtime.engine.connect() as conn:
                waiting = conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                )
            return bool(waiting == 2)

        wait_for(both_waiting, what="both workers waiting on the card")
    for w in workers:
        w.join(timeout=30)
    # Then one is processed and the other held: the second counted the first
    assert sorted(i["status"] for i in inbound_items(api)) == ["held", "processed"]


def test_more_than_20_mails_from_one_sender_to_one_address_in_2_hours_are_held(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    boris = create_user(api, "boris@example.com")
    card = create_card(api, anna["id"])
    other = create_card(api, anna["id"], title="other deal")
    address, other_address = archive_address(api, card["id"]), archive_address(api, other["id"])
    for n in range(20):
        mail = make_mail("Anna <ANNA@example.com>", address, subject=f"auto-reply {n}")
        send(smtp_server, mail, address, "anna@example.com")
    wait_for(lambda: len(inbound_items(api, "processed")) == 20, what="twenty mails")
    # The 21st and 22nd from the same sender to the same address are held, with the reason.
    for n in (20, 21):
        send(smtp_server, make_mail("anna@example.com", address, f"m{n}"), address, "a@x")
    wait_for(lambda: len(inbound_items(api, "held")) == 2, what="two held mails")
    held = inbound_items(api, "held")
    assert "possible mail loop: 20 messages from anna@example.com" in held[0]["reason"]
    # Another sender to that address, and the same sender to another address, go through.
    grant(api, boris["id"], deal="all")
    send(smtp_server, make_mail("boris@example.com", address, "boris"), address, "b@x")
    send(smtp_server, make_mail("anna@example.com", other_address, "x"), other_address, "a@x")
    wait_for(lambda: len(inbound_items(api, "processed")) == 22, what="the other two")
    emails = [e for e in history(api, card["id"]) if e["type"] == "email"]
    assert len(emails) == 21
    # An operator who checked it releases a held mail: processed, not held again.
    released = api.post(f"/api/inbound/{held[0]['id']}/reprocess")
    assert released.status_code == 202, released.text
    wait_for(lambda: len(inbound_items(api, "processed")) == 23, what="the released mail")
    assert len(inbound_items(api, "held")) == 1


def test_retention_deletes_finished_raw_inputs_but_keeps_failed_held_and_legal_hold(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    kept_card = create_card(api, anna["id"], title="in litigation")
    card = create_card(api, anna["id"])
    address, kept_address = archive_address(api, card["id"]), archive_address(api, kept_card["id"])
    mails = {
        "processed": make_mail("anna@example.com", address, "one"),
        "held by item": make_mail("anna@example.com", address, "two"),
        "held by card": make_mail("anna@example.com", kept_address, "three"),
        "rejected": make_mail("stranger@example.org", address, "four"),
    }
    for mail in mails.values():
        send(smtp_server, mail, str(mail["To"]), "x@example.org")
    wait_for(lambda: all(i["status"] != "received" for i in inbound_items(api)), what="all")
    by_subject = {}
    for listed in inbound_items(api):
        raw = inbound.load(runtime.sessions, listed["id"])
        assert raw is not None
        subject = next(
            k for k, m in mails.items() if f"Subject: {m['Subject']}\r\n".encode() in raw.raw
        )
        by_subject[subject] = listed["id"]
    [failed_id] = inbound.store(
        runtime.sessions,
        [inbound.NewInput(channel="email", raw=b"poison", dedupe_key="poison", recipient="r")],
    )
    with unit_of_work(runtime.sessions) as session:
        session.execute(
            update(InboundItem)
            .where(InboundItem.id == failed_id)
            .values(status="failed", finished_at=utcnow(), error="boom")
        )
    held = api.put(f"/api/inbound/{by_subject['held by item']}/legal-hold", json={"hold": True})
    assert held.status_code == 200 and held.json()["legal_hold"] is True
    api.put(f"/api/cards/{kept_card['id']}/legal-hold", json={"hold": True}).raise_for_status()

    # Not yet due: nothing is deleted.
    assert sweeper.purge_expired(runtime.sessions, timedelta(days=90), utcnow()) == 0
    # 91 days later: processed and rejected inputs lose their raw bytes, the others keep them.
    later = utcnow() + timedelta(days=91)
    assert sweeper.purge_expired(runtime.sessions, timedelta(days=90), later) == 2
    for subject, item_id in by_subject.items():
        kept = inbound.load(runtime.sessions, item_id)
        assert kept is not None
        purged = subject in ("processed", "rejected")
        assert (kept.raw == b"") is purged, subject
        assert (kept.purged_at is not None) is purged, subject
    failed = inbound.load(runtime.sessions, failed_id)
    assert failed is not None and failed.raw == b"poison"
    shown = item(api, by_subject["processed"])
    assert shown["purged_at"] is not None and shown["status"] == "processed"
    # A purged input cannot be re-processed, and the same mail sent again is still known.
    refused = api.post(f"/api/inbound/{by_subject['rejected']}/reprocess")
    assert refused.status_code == 409 and "deleted by retention" in refused.json()["detail"]
    send(smtp_server, mails["processed"], address, "x@example.org")
    assert len(inbound_items(api)) == 5
    # Lifting the card's hold lets its input go at the next run.
    api.put(f"/api/cards/{kept_card['id']}/legal-hold", json={"hold": False}).raise_for_status()
    assert sweeper.purge_expired(runtime.sessions, timedelta(days=90), later) == 1


def _waiting_item(runtime: Runtime, key: str) -> int:
    [item_id] = inbound.store(
        runtime.sessions,
        [inbound.NewInput(channel="email", raw=b"x", dedupe_key=key, recipient="r")],
    )
    return item_id


def test_a_started_attempt_holds_its_item_from_the_sweeper_for_its_lease(
    runtime: Runtime,
) -> None:
    item_id = _waiting_item(runtime, "lease")
    sent: list[int] = []
    enqueue = lambda _channel, item: sent.append(item)  # noqa: E731
    assert inbound.begin_attempt(runtime.sessions, item_id, 5, lease=timedelta(seconds=60))
    # 30 s on, the attempt may still run: not sent again; past its lease it is.
    soon = utcnow() + timedelta(seconds=30)
    assert inbound.resend_waiting(runtime.sessions, soon, enqueue) == 0
    later = utcnow() + timedelta(seconds=61)
    assert inbound.resend_waiting(runtime.sessions, later, enqueue) == 1
    assert sent == [item_id]


def test_re_sends_no_attempt_follows_come_further_apart_until_one_starts(
    runtime: Runtime,
) -> None:
    # Given an item the broker holds behind a long backlog: no worker starts on it
    item_id = _waiting_item(runtime, "backlog")
    sent: list[int] = []
    gap = timedelta(seconds=10)  # the sweep delay

    def sweep(ahead: float) -> int:
        """A sweep as if `ahead` s had passed since the last one marked it sent."""
        due = utcnow() + timedelta(seconds=ahead) - gap
        return inbound.resend_waiting(runtime.sessions, due, lambda _c, i: sent.append(i), 500, gap)

    def quiet() -> int:
        item = inbound.load(runtime.sessions, item_id)
        assert item is not None
        return item.quiet_resends

    # The first re-send comes one sweep delay after the send
    assert sweep(10.5) == 1 and quiet() == 1
    # then the gaps double: 2 x, then 4 x the delay (checked half-way: not yet)
    assert sweep(15) == 0
    assert sweep(21) == 1 and quiet() == 2
    assert sweep(30) == 0
    assert sweep(41) == 1 and quiet() == 3
    # and stay at 8 x
    assert sweep(60) == 0
    assert sweep(81) == 1 and quiet() == 4
    assert sweep(60) == 0
    assert sweep(81) == 1 and quiet() == 5
    # When a worker starts an attempt (then dies), the next re-send is one delay away again
    assert inbound.begin_attempt(runtime.sessions, item_id, 5, lease=timedelta(0))
    assert quiet() == 0
    assert sweep(10.5) == 1 and quiet() == 1
    assert sent == [item_id] * 6
    item = inbound.load(runtime.sessions, item_id)
    assert item is not None and item.resends == 6


def test_an_attempt_starting_while_the_sweeper_sends_keeps_its_lease(runtime: Runtime) -> None:
    item_id = _waiting_item(runtime, "race")
    lease = timedelta(seconds=60)

    def taken_at_once(_channel: str, item: int) -> None:
        # a worker takes the re-sent item before the sweeper records the send
        assert inbound.begin_attempt(runtime.sessions, item, 5, lease=lease)

    assert inbound.resend_waiting(runtime.sessions, utcnow(), taken_at_once, 500, lease) == 1
    item = inbound.load(runtime.sessions, item_id)
    assert item is not None and item.resends == 1 and item.quiet_resends == 0
    assert item.enqueued_at is not None and item.enqueued_at > utcnow() + timedelta(seconds=50)


def test_a_broker_failing_midway_keeps_what_it_took_and_leaves_the_rest_due(
    runtime: Runtime,
) -> None:
    first, second = _waiting_item(runtime, "a"), _waiting_item(runtime, "b")
    taken: list[int] = []

    def flaky(_channel: str, item_id: int) -> None:
        if item_id == second:
            raise ConnectionError("broker gone")
        taken.append(item_id)

    due = utcnow()  # both stored before: due
    with pytest.raises(ConnectionError):
        inbound.resend_waiting(runtime.sessions, due, flaky)
    took, refused = inbound.load(runtime.sessions, first), inbound.load(runtime.sessions, second)
    assert took is not None and took.resends == 1
    assert refused is not None and refused.resends == 0
    # The one not sent is due again at once; the one sent waits for the next sweep delay.
    again = inbound.resend_waiting(runtime.sessions, due, lambda _c, i: taken.append(i))
    assert again == 1
    assert taken == [first, second]


def test_an_attempt_past_its_time_limit_is_recorded_as_a_failure(runtime: Runtime) -> None:
    item_id = _waiting_item(runtime, "slow")

    def interrupted(_sessions: object, _item_id: int) -> None:
        raise worker_module.TimeLimitExceeded("attempt took too long")

    run = worker_module._guarded(interrupted, runtime.sessions, 3, timedelta(0))
    with pytest.raises(worker_module.TimeLimitExceeded):
        run(item_id)
    item = inbound.load(runtime.sessions, item_id)
    assert item is not None and item.attempts == 1 and item.status == "received"
    assert item.error == "TimeLimitExceeded: attempt took too long"


def test_the_loop_count_stops_at_the_limit(runtime: Runtime) -> None:
    # Given five processed mails from one sender to one address, and a sixth
    ids = inbound.store(
        runtime.sessions,
        [
            inbound.NewInput(channel="email", raw=b"x", dedupe_key=f"loop-{n}", recipient="r")
            for n in range(6)
        ],
    )
    with unit_of_work(runtime.sessions) as session:
        session.execute(
            update(InboundItem)
            .where(InboundItem.id.in_(ids[:5]))
            .values(status="processed", sender="a@x")
        )
    since = utcnow() - timedelta(hours=2)
    with unit_of_work(runtime.sessions) as session:
        sixth = session.get(InboundItem, ids[5])
        assert sixth is not None
        # Then the count says all five when the limit is above, and stops at a lower limit
        assert inbound.recent_from(session, sixth, "a@x", since, 20) == 5
        assert inbound.recent_from(session, sixth, "a@x", since, 3) == 3
        assert inbound.recent_from(session, sixth, "b@x", since, 20) == 0
