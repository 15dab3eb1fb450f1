"""Delivery reports and mail to postmaster through the real door and workers (issue 20).

A delivery report (RFC 3464 `multipart/report`) passes what any mail passes: only a CRM user
who may edit the card puts one there, and copies past the loop limit are held. Mail to
postmaster (RFC 5321 section 4.5.1) is accepted and left for the administrators.
"""

from __future__ import annotations

import smtplib
from collections import Counter
from email.policy import SMTP
from email.utils import make_msgid

import httpx
import pytest
from sqlalchemy import func, select

from crm_core.models import InboundItem
from ingest.runtime import Runtime
from tests.support.helpers import (
    archive_address,
    counters,
    create_card,
    create_user,
    history,
    inbound_items,
    make_mail,
    wait_for,
)

BANK = "Our bank details changed, please pay IBAN FR76 3000 6000 0112 3456 7890 189 from now on."


def report(sender: str, to: str, text: str = BANK, *, automatic: bool = True) -> bytes:
    """A delivery status notification as a mail server writes one (CRLF)."""
    head = [
        f"From: {sender}",
        f"To: {to}",
        "Subject: Delivery Status Notification (Failure)",
        f"Message-ID: {make_msgid(domain='mx.example.net')}",
        "Date: Fri, 20 Nov 2026 09:30:00 +0000",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"',
    ]
    if automatic:
        head.append("Auto-Submitted: auto-replied")  # as Postfix and Exim mark theirs
    lines = [
        *head,
        "",
        "--b1",
        "Content-Type: text/plain; charset=utf-8",
        "",
        text,
        "",
        "--b1",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; mx.example.net",
        "",
        "Final-Recipient: rfc822; john.doe@acme.com",
        "Action: failed",
        "Status: 5.1.1",
        "",
        "--b1",
        "Content-Type: message/rfc822-headers",
        "",
        "From: anna@example.com",
        "To: john.doe@acme.com",
        "Subject: Quote",
        "",
        "--b1--",
        "",
    ]
    return "\r\n".join(lines).encode()


def deliver(server: tuple[str, int], raw: bytes, to: str, envelope_sender: str = "") -> None:
    """Over one real SMTP session; "" is the null reverse-path reports are sent with."""
    with smtplib.SMTP(*server, timeout=30) as client:
        client.sendmail(envelope_sender or "<>", [to], raw)


def statuses(api: httpx.Client) -> dict[str, int]:
    return dict(Counter(item["status"] for item in inbound_items(api)))


AnnaCard = tuple[dict[str, object], dict[str, object], str]  # Anna, her card, its archive address


@pytest.fixture
def anna_card(api: httpx.Client) -> AnnaCard:
    anna = create_user(api, "anna@example.com", "Anna Sales")
    card = create_card(api, int(str(anna["id"])))
    return anna, card, archive_address(api, int(str(card["id"])))


def test_a_strangers_report_is_rejected_like_a_strangers_mail(
    api: httpx.Client,
    smtp_server: tuple[str, int],
    worker: None,
    anna_card: AnnaCard,
) -> None:
    _anna, card, address = anna_card
    bob = create_user(api, "bob@example.com", "Bob, other department")
    # Given reports to Anna's card from a stranger, from a mail server, and from a user who
    # may not edit the card
    deliver(smtp_server, report("mallory@evil.example", address), address)
    deliver(smtp_server, report("MAILER-DAEMON@mx.example.net", address), address)
    deliver(smtp_server, report(str(bob["email"]), address), address, str(bob["email"]))
    # Then each is rejected with the reason any mail from them gets, and nothing is on the card
    wait_for(lambda: statuses(api) == {"rejected": 3}, what="three rejections")
    reasons = sorted(item["reason"] for item in inbound_items(api, "rejected"))
    assert reasons == [
        "sender MAILER-DAEMON@mx.example.net is not a CRM user",
        f"sender bob@example.com may not edit card {card['id']}, so not archive to it",
        "sender mallory@evil.example is not a CRM user",
    ]
    assert history(api, int(str(card["id"]))) == []


def test_copies_of_a_users_report_past_the_loop_limit_are_held(
    api: httpx.Client,
    smtp_server: tuple[str, int],
    worker: None,
    anna_card: AnnaCard,
) -> None:
    anna, card, address = anna_card
    limit = 5  # the default CRM_LOOP_LIMIT_COUNT
    # Given 25 copies of one report from Anna (each with its own Message-ID, automatic and
    # with the null sender: a report is all that, and is still recorded as a bounce)
    for _ in range(25):
        deliver(smtp_server, report("anna@example.com", address), address)
    # Then the limit's worth is processed and the rest held as a possible loop
    wait_for(
        lambda: statuses(api) == {"processed": limit, "held": 25 - limit},
        what="five processed and twenty held",
    )
    assert all(
        i["reason"].startswith("held as a possible mail loop") for i in inbound_items(api, "held")
    )
    entries = history(api, int(str(card["id"])))
    assert [e["type"] for e in entries] == ["bounce"] * limit
    # A bounce is no customer message: no incoming activity, no unread
    assert counters(api, int(str(anna["id"])))["incoming"] == 0
    assert api.get(f"/api/cards/{card['id']}").json()["unread"] is False


def test_a_report_with_our_loop_mark_is_refused_as_a_loop(
    api: httpx.Client,
    smtp_server: tuple[str, int],
    worker: None,
    anna_card: AnnaCard,
) -> None:
    _anna, card, address = anna_card
    deliver(smtp_server, b"X-Loop: archive.test\r\n" + report("anna@example.com", address), address)
    [item] = wait_for(lambda: inbound_items(api, "rejected"), what="the rejection")
    assert item["reason"] == "mail loop (X-Loop: archive.test)"
    assert history(api, int(str(card["id"]))) == []


def test_mail_to_postmaster_is_accepted_and_left_for_the_administrators(
    api: httpx.Client,
    smtp_server: tuple[str, int],
    worker: None,
    anna_card: AnnaCard,
) -> None:
    _anna, card, _address = anna_card
    # Given mail to postmaster: bare (RFC 5321 4.5.1), and at our domain in another case
    abuse = make_mail("Carol <carol@example.net>", "postmaster", subject="Spam reçu")
    question = make_mail("dave@example.org", "PostMaster@Archive.Test", subject="Who runs this?")
    with smtplib.SMTP(*smtp_server, timeout=30) as client:
        assert (
            client.sendmail("carol@example.net", ["postmaster"], abuse.as_bytes(policy=SMTP)) == {}
        )
        refused = client.sendmail(
            "dave@example.org", ["PostMaster@Archive.Test"], question.as_bytes(policy=SMTP)
        )
        assert refused == {}
        # postmaster of another domain is still no business of ours
        client.mail("dave@example.org")
        assert client.rcpt("postmaster@example.org") == (550, b"5.7.1 Relaying denied")
    # Then both wait for a person in the administrators' unmatched list, saying what they are
    wait_for(lambda: len(inbound_items(api, "unmatched")) == 2, what="two unmatched items")
    waiting = inbound_items(api, "unmatched")
    unmatched = api.get("/api/unmatched").json()["items"]
    assert [i["id"] for i in unmatched] == [i["id"] for i in waiting]
    assert {i["recipient"] for i in unmatched} == {"postmaster@archive.test"}
    assert sorted(i["reason"] for i in unmatched) == [
        "mail to postmaster: kept for the administrators, on no card "
        "(From: Carol <carol@example.net>; Subject: Spam reçu)",
        "mail to postmaster: kept for the administrators, on no card "
        "(From: dave@example.org; Subject: Who runs this?)",
    ]
    assert all(i["card_id"] is None for i in unmatched)
    assert history(api, int(str(card["id"]))) == []


def test_a_stranger_cannot_fill_the_disk_through_postmaster(
    runtime: Runtime, smtp_server: tuple[str, int]
) -> None:
    """The outside probe's second run: ten 20 MB mails to postmaster grew the data directory
    by 440 MB. Mail to postmaster is at most 1 MiB, and each one counts for its client as an
    unknown address does: past the door's limit its RCPTs wait (450)."""
    big = b"From: x@ext.example\r\nSubject: big\r\n\r\n" + (b"A" * 998 + b"\r\n") * 1100
    small = b"From: x@ext.example\r\nSubject: hello\r\n\r\nWho runs this?\r\n"
    limit = runtime.settings.smtp_unknown_rcpt_limit
    with smtplib.SMTP(*smtp_server, timeout=30) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("x@ext.example", ["postmaster"], big)
        assert refused.value.smtp_code == 552
        assert b"postmaster is at most 1048576 bytes" in refused.value.smtp_error
        client.rset()
        # The refused one counted already; the rest of the window's allowance is accepted
        for n in range(limit - 1):  # distinct mails (a copy would be stored once)
            assert client.sendmail("x@ext.example", ["postmaster"], small + b"%d\r\n" % n) == {}
        client.mail("x@ext.example")
        assert client.rcpt("postmaster")[0] == 450
    with runtime.sessions() as session:
        stored = session.scalar(select(func.count()).select_from(InboundItem))
    assert stored == limit - 1
