"""Inputs that cannot be processed: poison (failed, bounded even when it kills its worker),
re-processing (API and CLI), mail loops (copies of one message held past the loop limit;
X-Loop and our own Received line refused), and retention with legal hold."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from crm_core import email_cases
from crm_core.db import unit_of_work
from crm_core.models import InboundItem, utcnow
from ingest import inbound, sweeper
from ingest.mailbox import loop_guard
from ingest.mailbox.processing import LoopLimit, process_email
from ingest.pipeline import TimeLimitExceeded, declare_actors
from ingest.runtime import Runtime
from tests.helpers import (
    archive_address,
    create_card,
    create_user,
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
    # Given a limit of one copy per message and address, and two copies of one mail stored
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    mail = make_mail("anna@example.com", address, "m")
    for n in (1, 2):
        send(smtp_server, relayed(mail, n), address, "a@x")
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


def relayed(mail: EmailMessage, hop: int) -> bytes:
    """`mail` as a relay passes it on: one more Received line, so other bytes (another
    inbound item), the same message."""
    trace = f"Received: from relay{hop}.example.com by mx.example.com; {mail['Date']}\r\n"
    return trace.encode() + mail.as_bytes(policy=SMTP)


def test_distinct_mails_are_never_held_but_copies_of_one_message_past_the_limit_are(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    # The default limit: 5 copies of one message within 2 hours
    assert runtime.settings.loop_limit_count == 5
    assert runtime.settings.loop_limit_window_seconds == 7200
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    other = create_card(api, anna["id"], title="other deal")
    address, other_address = archive_address(api, card["id"]), archive_address(api, other["id"])
    # Given 25 distinct mails from Anna to one address: more than the limit, all processed
    for n in range(25):
        mail = make_mail("Anna <ANNA@example.com>", address, f"Order {n}", f"About order {n}.")
        send(smtp_server, mail, address, "anna@example.com")
    wait_for(lambda: statuses(api) == {"processed": 25}, what="twenty-five mails")
    # When one message comes 7 times (a forwarding rule going round: same Message-ID)
    looping = make_mail("anna@example.com", address, "Quote", "Here is the quote.")
    for hop in range(7):
        send(smtp_server, relayed(looping, hop), address, "anna@example.com")
    # Then 5 copies are processed (recorded once) and the 6th and 7th are held
    wait_for(lambda: statuses(api) == {"processed": 30, "held": 2}, what="two held copies")
    held = inbound_items(api, "held")
    assert held[0]["reason"] == (
        "held as a possible mail loop: the same message (same Message-ID or same content) "
        "was already processed 5 times for this archive address in the last 2:00:00"
    )
    emails = [e for e in history(api, card["id"]) if e["type"] == "email"]
    assert len(emails) == 26
    # The same message to another address goes through (it counts per archive address)
    send(smtp_server, relayed(looping, 99), other_address, "anna@example.com")
    wait_for(lambda: statuses(api) == {"processed": 31, "held": 2}, what="the other address")
    # An operator who checked it releases a held mail: processed, not held again.
    released = api.post(f"/api/inbound/{held[0]['id']}/reprocess")
    assert released.status_code == 202, released.text
    wait_for(lambda: statuses(api) == {"processed": 32, "held": 1}, what="the released mail")


@pytest.mark.settings(loop_limit_count=3)
def test_an_auto_reply_ping_pong_is_held_though_each_round_has_a_new_message_id(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    # Given Anna's out-of-office reply going round with a customer's, bcc'd to the card:
    # each round a new Message-ID and Date and one more prefix, the same words
    subject = "Delivery"
    for n in range(5):
        subject = f"Automatic reply: {subject}"
        mail = make_mail("anna@example.com", address, subject, "I am away until Monday.")
        mail.replace_header("Date", f"Fri, 20 Nov 2026 09:3{n}:00 +0000")
        send(smtp_server, mail, address, "anna@example.com")
    # Then the first three are processed and the next ones held as the same message
    wait_for(lambda: statuses(api) == {"processed": 3, "held": 2}, what="two held rounds")
    assert all("the same message" in i["reason"] for i in inbound_items(api, "held"))


def test_mail_that_names_us_in_x_loop_or_came_through_our_door_before_is_a_loop(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    other = create_card(api, anna["id"], title="other deal")
    address, other_address = archive_address(api, card["id"]), archive_address(api, other["id"])
    # Given a mail taken by our door and processed: our Received line is on top of it
    send(smtp_server, make_mail("anna@example.com", address, "first"), address, "a@x")
    [first] = wait_for(lambda: inbound_items(api, "processed"), what="the first mail")
    stored = inbound.load(runtime.sessions, first["id"])
    assert stored is not None
    fields = loop_guard.header_fields(stored.raw)
    assert [name for name, _ in fields[:2]] == ["authentication-results", "received"]
    assert re.fullmatch(
        r"from \S+ \(\[127\.0\.0\.1\]\) by archive\.test \(crm-ingest\) with ESMTP; .+",
        fields[1][1],
    )
    # When those stored bytes come to the door again (to another card, or a mail naming our
    # archive domain in X-Loop, as procmail and list servers write it)
    send(smtp_server, stored.raw, other_address, "a@x")
    x_loop = make_mail("anna@example.com", address, "x-loop")
    x_loop["X-Loop"] = address
    send(smtp_server, x_loop, address, "a@x")
    # Then both are refused as loops, with the reason
    wait_for(lambda: len(inbound_items(api, "rejected")) == 2, what="two refusals")
    assert sorted(i["reason"] for i in inbound_items(api, "rejected")) == [
        "mail loop (X-Loop: " + address + ")",
        "mail loop (it came through this archive door before: our Received line is among "
        "its headers)",
    ]
    # And an X-Loop of someone else's is no sign of ours
    elsewhere = make_mail("anna@example.com", address, "list", "From the list.")
    elsewhere["X-Loop"] = "sales-list@lists.example.com"
    send(smtp_server, elsewhere, address, "a@x")
    wait_for(lambda: len(inbound_items(api, "processed")) == 2, what="the list mail")


def statuses(api: httpx.Client) -> dict[str, int]:
    response = api.get("/api/inbound", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return dict(Counter(i["status"] for i in response.json()["items"]))


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
        runtime.commits,
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
        runtime.commits,
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


def test_an_attempt_past_its_time_limit_is_recorded_as_a_failure(
    api: httpx.Client, runtime: Runtime
) -> None:
    item_id = _waiting_item(runtime, "slow")

    def interrupted(_sessions: object, _item_id: int) -> None:
        raise TimeLimitExceeded("attempt took too long")

    # One attempt allowed: recorded as failed, then parked (not retried).
    slow = declare_actors(runtime.pipeline.broker, runtime.sessions, 1, {"slow": interrupted})
    slow.enqueue("slow", item_id)
    running = slow.start_worker(threads=1, poll_ms=100)
    try:
        wait_for(lambda: inbound_items(api, "failed"), timeout=30, what="the parked item")
    finally:
        running.stop()
    item = inbound.load(runtime.sessions, item_id)
    assert item is not None and item.attempts == 1 and item.status == "failed"
    assert item.error == "TimeLimitExceeded: attempt took too long"


def test_the_copy_count_matches_by_message_id_or_content_and_stops_at_the_limit(
    runtime: Runtime,
) -> None:
    # Given processed inputs to one address: five copies of one message (three by their
    # Message-ID, two by their content), one other message, one copy held, one copy to
    # another address, one copy from before the window; and a new copy
    rows = [
        ("r", "m", "x", "processed", 0),
        ("r", "m", "y", "processed", 0),
        ("r", "m", None, "processed", 0),
        ("r", None, "c", "processed", 0),
        ("r", "n", "c", "processed", 0),
        ("r", "other", "other", "processed", 0),
        ("r", "m", "c", "held", 0),
        ("other", "m", "c", "processed", 0),
        ("r", "m", "c", "processed", 3),
        ("r", "m", "c", "received", 0),
    ]
    ids = inbound.store(
        runtime.commits,
        [
            inbound.NewInput(channel="email", raw=b"x", dedupe_key=f"loop-{n}", recipient=row[0])
            for n, row in enumerate(rows)
        ],
    )
    now = utcnow()
    with unit_of_work(runtime.sessions) as session:
        for item_id, (_r, message, content, status, hours_ago) in zip(ids, rows, strict=True):
            session.execute(
                update(InboundItem)
                .where(InboundItem.id == item_id)
                .values(
                    message_id_hash=message,
                    content_digest=content,
                    status=status,
                    received_at=now - timedelta(hours=hours_ago),
                )
            )
    since = now - timedelta(hours=2)
    with unit_of_work(runtime.sessions) as session:
        new = session.get(InboundItem, ids[-1])
        assert new is not None
        # Then the count finds the five, stops at a lower limit, and needs a match
        assert inbound.recent_copies(session, new, since, 20) == 5
        assert inbound.recent_copies(session, new, since, 3) == 3
        new.message_id_hash = None  # no Message-ID: the content alone
        assert inbound.recent_copies(session, new, since, 20) == 2
        new.content_digest = "unseen"
        assert inbound.recent_copies(session, new, since, 20) == 0


def _record(**changes: Any) -> email_cases.EmailRecord:
    mail = email_cases.EmailRecord(
        logged_by="anna@example.com",
        sender=email_cases.Party("John Doe", "john.doe@acme.com"),
        occurred_at=datetime(2025, 3, 3, 10, 0, tzinfo=UTC),
        subject="Order 12",
        text="Thanks, received.\n\nJohn",
        message_id="<one@acme.com>",
        date_header="Mon, 3 Mar 2025 10:00:00 +0000",
    )
    return replace(mail, **changes)


def test_content_digest_is_the_same_for_a_round_of_a_ping_pong() -> None:
    # A new Message-ID, Date and prefix each round, the whitespace reflowed: the same content
    first = _record()
    again = _record(
        subject="Automatic reply: RE: AW: Order 12",
        text="Thanks,  received.\r\n\r\nJohn\n",
        message_id="<two@acme.com>",
        date_header="Mon, 3 Mar 2025 10:05:00 +0000",
        occurred_at=datetime(2025, 3, 3, 10, 5, tzinfo=UTC),
    )
    assert loop_guard.content_digest(again) == loop_guard.content_digest(first)
    assert loop_guard.message_id_hash("<one@acme.com>") != loop_guard.message_id_hash(
        "<two@acme.com>"
    )
    assert loop_guard.message_id_hash("  ") is None


@pytest.mark.parametrize(
    "changes",
    [
        {"text": "Thanks, received. John (2)"},
        {"subject": "Order 13"},
        {"sender": email_cases.Party("John Doe", "john@globex.corp")},
        {"note": "Please archive"},
        {"attachments": [email_cases.FileIn("a.pdf", "application/pdf", b"%PDF-1")]},
    ],
    ids=["text", "subject", "sender", "note", "attachment"],
)
def test_content_digest_tells_distinct_mails_apart(changes: dict[str, Any]) -> None:
    assert loop_guard.content_digest(_record(**changes)) != loop_guard.content_digest(_record())


def test_two_short_forwards_of_one_customer_differ_by_the_original_date() -> None:
    # "Thanks, received." twice from John, forwarded a week apart: two mails, not a loop
    forward = _record(forwarded=True)
    later = replace(forward, occurred_at=forward.occurred_at + timedelta(days=7))
    assert loop_guard.content_digest(later) != loop_guard.content_digest(forward)
    # (a mail of one's own has no such date: a ping-pong writes a new Date each round)
    assert loop_guard.content_digest(replace(later, forwarded=False)) == loop_guard.content_digest(
        _record()
    )


def test_our_trace_line_is_recognised_and_names_only_our_domain() -> None:
    line = loop_guard.trace_line(
        "archive.test", "mail.example.com", "::1", "ESMTPS", datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert line.startswith(b"Received: from mail.example.com ([IPv6:::1])\r\n")
    [(name, value)] = loop_guard.header_fields(line + b"\r\nbody")
    assert name == "received"
    assert loop_guard.is_our_trace(value, "archive.test")
    assert not loop_guard.is_our_trace(value, "other.test")
    assert not loop_guard.is_our_trace("from x by archive.test (Postfix); date", "archive.test")
    # A client's HELO cannot write header syntax into our line
    forged = loop_guard.trace_line("archive.test", "x\r\nX-Evil: 1 (a;b)", "1.2.3.4", "SMTP", NOW)
    assert forged.split(b"\r\n")[0] == b"Received: from xX-Evil:1ab ([1.2.3.4])"
    assert forged.count(b"\r\n") == 3
    assert loop_guard.names_domain("card-abc@archive.test", "archive.test")
    assert loop_guard.names_domain("ARCHIVE.TEST", "archive.test")
    assert not loop_guard.names_domain("list@notarchive.test", "archive.test")
    assert not loop_guard.names_domain("list@sub.archive.test", "archive.test")


NOW = datetime(2026, 12, 1, tzinfo=UTC)
