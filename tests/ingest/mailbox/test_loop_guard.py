"""Mail loops: copies of one message held past the loop limit (counted by Message-ID or
content, one after the other when processed at once), auto-reply ping-pong, and X-Loop and
our own Received line refused."""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from crm_core import email_cases
from crm_core.db import unit_of_work
from crm_core.models import InboundItem, utcnow
from ingest import inbound, processing
from ingest.mailbox import loop_guard
from ingest.mailbox.processing import CHANNEL as EMAIL
from ingest.mailbox.processing import recent_copies
from ingest.runtime import Runtime
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
from tests.support.locks import card_locked


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
    one = runtime.settings.model_copy(
        update={"loop_limit_count": 1, "loop_limit_window_seconds": 2 * 3600}
    )
    # When two workers process them at the same moment (both wait for the card to be free)
    with card_locked(runtime.engine, card["id"]):
        workers = [
            threading.Thread(target=processing.process, args=(runtime.sessions, EMAIL, one, i))
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
    stored = processing.load(runtime.sessions, first["id"])
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
        assert recent_copies(session, new, since, 20) == 5
        assert recent_copies(session, new, since, 3) == 3
        new.message_id_hash = None  # no Message-ID: the content alone
        assert recent_copies(session, new, since, 20) == 2
        new.content_digest = "unseen"
        assert recent_copies(session, new, since, 20) == 0


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
