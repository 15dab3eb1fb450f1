"""A mail sent over SMTP reaches its card: history, incoming activity, unread, counter, focus.

Real SMTP socket, real broker, real worker threads, real HTTP API.
"""

from __future__ import annotations

import smtplib
from datetime import timedelta
from email.policy import SMTP
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crm_core import counters
from crm_core.company import COUNTER_MODES
from crm_core.db import read_only
from crm_core.models import Activity, User, utcnow
from ingest import inbound, sweeper
from ingest.mailbox.smtp_handler import make_archive_handler
from ingest.pipeline import build_broker, declare_actors
from ingest.runtime import Runtime
from tests.conftest import serve_smtp
from tests.support.helpers import (
    all_finished,
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
from tests.support.helpers import (
    counters as read_counters,
)


def test_mail_lands_on_its_card_with_unread_counter_and_focus(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None
) -> None:
    # Given a user responsible for two cards of one Kanban column, the older one on top
    anna = create_user(api, "anna@example.com", "Anna Sales")
    quiet = create_card(api, anna["id"], title="Quiet deal")
    target = create_card(api, anna["id"], title="Acme deal")
    address = archive_address(api, target["id"])
    send(smtp_server, make_mail("Anna Sales <anna@example.com>", address), address, "x@y.z")
    wait_for(lambda: history(api, target["id"]), what="first mail")
    quiet_address = archive_address(api, quiet["id"])
    send(smtp_server, make_mail("anna@example.com", quiet_address), quiet_address, "x@y.z")
    wait_for(lambda: history(api, quiet["id"]), what="mail on the quiet card")
    top = api.get("/api/kanban", params={"entity_type": "deal", "stage": "new"}).json()["cards"]
    assert [c["id"] for c in top] == [quiet["id"], target["id"]]
    api.post(f"/api/cards/{target['id']}/read")

    # When Anna sends one more mail to the Acme card's archive address
    mail = make_mail(
        "Anna Sales <Anna@Example.com>",
        f"Bessie <bessie.berry@acme.com>, {address}",
        subject="Integer consequat non purus",
        body="Aenean quis diam urna.",
    )
    mail["Cc"] = "Walter Sheltan <walter.sheltan@acme.com>"
    send(smtp_server, mail, address, "anna@example.com")

    # Then it is in the card's history, newest first, with the message's own fields
    wait_for(lambda: len(history(api, target["id"])) == 2, what="the second mail")
    entries = history(api, target["id"])
    latest = entries[0]
    assert latest["type"] == "email"
    assert latest["subject"] == "Integer consequat non purus"
    assert latest["text"].strip() == "Aenean quis diam urna."
    assert latest["from"] == {"name": "Anna Sales", "address": "Anna@Example.com"}
    assert latest["to"][0] == {"name": "Bessie", "address": "bessie.berry@acme.com"}
    assert latest["cc"] == [{"name": "Walter Sheltan", "address": "walter.sheltan@acme.com"}]
    assert latest["occurred_at"] == "2026-11-20T09:30:00Z"
    assert latest["logged_by_id"] == anna["id"]
    assert latest["logged_at"] >= latest["occurred_at"]
    # And the card is unread, focused on top of its column with the reason, the counter raised
    card = api.get(f"/api/cards/{target['id']}").json()
    assert card["unread"] is True
    assert card["focus_reason"] == "incoming e-mail"
    top = api.get("/api/kanban", params={"entity_type": "deal", "stage": "new"}).json()["cards"]
    assert [c["id"] for c in top] == [target["id"], quiet["id"]]
    assert read_counters(api, anna["id"]) == {
        "incoming": 3,
        "planned": 0,
        "today": 3,
        "employees": {"incoming": 0, "planned": 0},
    }


def test_same_message_twice_is_recorded_once(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    mail = make_mail("anna@example.com", address)
    # The very same bytes twice (a client retrying after a lost 250)...
    send(smtp_server, mail, address, "anna@example.com")
    send(smtp_server, mail, address, "anna@example.com")
    # ...and once more through a relay that added its trace header.
    relayed = b"Received: from relay.example.net by mx; Fri, 20 Nov 2026 09:31:00 +0000\r\n"
    send(smtp_server, relayed + mail.as_bytes(policy=SMTP), address, "anna@example.com")
    wait_for(lambda: all_finished(api) and len(inbound_items(api)) == 2, what="both items done")
    assert [i["status"] for i in inbound_items(api)] == ["processed", "processed"]
    assert len(history(api, card["id"])) == 1
    assert read_counters(api, anna["id"])["incoming"] == 1
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Activity)) == 1


def test_mail_from_a_non_user_is_rejected_with_its_reason(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    send(
        smtp_server, make_mail("Mallory <mallory@evil.example>", address), address, "m@evil.example"
    )
    rejected = wait_for(lambda: inbound_items(api, "rejected"), what="a rejected item")
    assert rejected[0]["reason"] == "sender mallory@evil.example is not a CRM user"
    assert history(api, card["id"]) == []
    assert read_counters(api, anna["id"])["incoming"] == 0
    assert api.get(f"/api/cards/{card['id']}").json()["unread"] is False
    one = api.get(f"/api/inbound/{rejected[0]['id']}").json()
    assert one["status"] == "rejected" and one["reason"] == rejected[0]["reason"]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-replied", "automatic message (Auto-Submitted: auto-replied)"),
        ("Precedence: bulk", "bulk message (Precedence: bulk)"),
    ],
)
def test_automatic_mail_is_not_a_customer_message(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None, header: str, reason: str
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    name, value = header.split(": ")
    mail = make_mail("anna@example.com", address)
    mail[name] = value
    send(smtp_server, mail, address, "anna@example.com")
    rejected = wait_for(lambda: inbound_items(api, "rejected"), what="a rejected item")
    assert rejected[0]["reason"] == reason
    assert history(api, card["id"]) == []


def test_processing_the_same_item_again_changes_nothing(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    item = wait_for(lambda: inbound_items(api, "processed"), what="processed item")[0]
    # A redelivery by the broker and a sweep both send the same id again
    for _ in range(3):
        runtime.pipeline.enqueue("email", item["id"])
    runtime.pipeline.broker.join("ingest", timeout=20_000)
    assert len(history(api, card["id"])) == 1
    assert read_counters(api, anna["id"])["incoming"] == 1


def test_accepted_while_the_broker_is_down_then_swept(
    api: httpx.Client, runtime: Runtime, worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    # Given a front door whose broker refuses connections (nothing listens on port 9)
    broker = build_broker("redis://127.0.0.1:9/0")
    dead = declare_actors(broker, runtime.sessions, 3, {"email": lambda _s, _i: None})
    server = serve_smtp(
        runtime, make_archive_handler(runtime.commits, dead.enqueue, "archive.test")
    )
    # When a mail arrives, Then it is still accepted: it is stored, which is what counts
    send(next(server), make_mail("anna@example.com", address), address, "anna@example.com")
    server.close()
    [item] = inbound_items(api)
    assert item["status"] == "received"
    # And the sweeper, once the item has waited long enough, sends it to a live broker
    assert sweeper.sweep_once(runtime.sessions, runtime.pipeline.enqueue, timedelta(hours=1)) == 0
    wait_for(
        lambda: sweeper.sweep_once(runtime.sessions, runtime.pipeline.enqueue, timedelta(0)),
        what="the sweep",
    )
    wait_for(lambda: inbound_items(api, "processed"), what="processed item")
    assert len(history(api, card["id"])) == 1


def test_an_error_of_ours_is_retried_then_parked_as_failed(
    api: httpx.Client, runtime: Runtime
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    calls: list[int] = []

    def always_failing(_sessions: object, inbound_id: int) -> None:
        calls.append(inbound_id)
        raise RuntimeError("database schema mismatch")

    broken = declare_actors(
        runtime.pipeline.broker, runtime.sessions, 3, processors={"broken": always_failing}
    )
    [item_id] = inbound.store(
        runtime.commits,
        [inbound.NewInput(channel="broken", raw=b"x", dedupe_key="k1", recipient="r")],
    )
    broken.enqueue("broken", item_id)
    running = broken.start_worker(threads=1)
    try:
        failed = wait_for(lambda: inbound_items(api, "failed"), timeout=60, what="parked item")
    finally:
        running.stop()
    assert failed[0]["attempts"] == 3
    assert failed[0]["error"] == "RuntimeError: database schema mismatch"
    assert calls == [item_id] * 3
    assert history(api, card["id"]) == []


def test_maintained_counter_equals_a_recount(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    boris = create_user(api, "boris@example.com")
    grant(api, boris["id"], deal="all")  # a colleague who may archive to anna's deals
    cards = [
        create_card(api, owner["id"], title=f"card {n}")
        for n, owner in enumerate([anna, boris, anna])
    ]
    for n, card in enumerate(cards):
        address = archive_address(api, card["id"])
        for k in range(2):
            send(
                smtp_server,
                make_mail("boris@example.com", address, subject=f"m{n}.{k}"),
                address,
                "b@x",
            )
    wait_for(lambda: len(inbound_items(api, "processed")) == 6, what="six processed mails")
    with read_only(runtime.sessions) as session:
        for user in session.scalars(select(User)):
            now = utcnow()
            for mode in COUNTER_MODES:
                fast = counters.read_counters(session, user.id, now, mode)
                assert fast == counters.recount(session, user, mode, now)
    assert read_counters(api, anna["id"])["incoming"] == 4
    assert read_counters(api, boris["id"])["incoming"] == 2


def _card_with_address(api: httpx.Client) -> tuple[dict[str, Any], dict[str, Any], str]:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    return anna, card, archive_address(api, card["id"])


def test_bounces_and_loops_are_not_customer_messages(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None
) -> None:
    _anna, card, address = _card_with_address(api)
    bounce = make_mail("anna@example.com", address, subject="bounce")
    with smtplib.SMTP(*smtp_server) as client:
        client.sendmail("<>", [address], bounce.as_bytes(policy=SMTP))
    hops = b"".join(
        b"Received: from hop%d by mx; Fri, 20 Nov 2026 09:31:00 +0000\r\n" % n for n in range(31)
    )
    looped = hops + make_mail("anna@example.com", address, subject="loop").as_bytes(policy=SMTP)
    send(smtp_server, looped, address, "anna@example.com")
    wait_for(lambda: len(inbound_items(api, "rejected")) == 2, what="two rejections")
    reasons = sorted(item["reason"] for item in inbound_items(api, "rejected"))
    assert reasons == [
        "mail loop (31 Received headers)",
        "null envelope sender (a bounce or notification)",
    ]
    assert history(api, card["id"]) == []


def test_a_mail_without_date_delivered_three_times_is_recorded_once(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None
) -> None:
    anna, card, address = _card_with_address(api)
    mail = make_mail("anna@example.com", address)
    del mail["Date"]
    for hop in range(3):
        trace = b"Received: from relay%d by mx; Fri, 20 Nov 2026 09:31:00 +0000\r\n" % hop
        send(smtp_server, trace + mail.as_bytes(policy=SMTP), address, "anna@example.com")
    wait_for(lambda: len(inbound_items(api, "processed")) == 3, what="three processed items")
    assert len(history(api, card["id"])) == 1
    assert read_counters(api, anna["id"])["incoming"] == 1


def test_odd_bytes_in_headers_are_kept_readable(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None
) -> None:
    _anna, card, address = _card_with_address(api)
    raw = (
        b"From: J\xe9r\xf4me <anna@example.com>\r\nTo: " + address.encode() + b"\r\n"
        b"Subject: caf\xe9 \x00ok\r\nDate: Fri, 20 Nov 2026 09:30:00 +0000\r\n\r\n"
        b"Body with a NUL \x00 inside.\r\n"
    )
    send(smtp_server, raw, address, "anna@example.com")
    [entry] = wait_for(lambda: history(api, card["id"]), what="history entry")
    assert entry["subject"] == "café ok"
    assert entry["from"] == {"name": "Jérôme", "address": "anna@example.com"}
    assert "\x00" not in entry["text"] and entry["text"].startswith("Body with a NUL")


def test_hostile_html_is_read_without_stalling(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None
) -> None:
    _anna, card, address = _card_with_address(api)
    mail = make_mail("anna@example.com", address)
    mail.set_content(
        "<p>Hello &amp; welcome</p>" + "<script>" * 100_000 + "<div>" * 20_000, subtype="html"
    )
    send(smtp_server, mail, address, "anna@example.com")
    [entry] = wait_for(lambda: history(api, card["id"]), what="history entry")
    assert entry["text"] == "Hello & welcome"
