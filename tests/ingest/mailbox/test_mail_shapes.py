"""Mail shapes the parser must read: repeated single-value headers (the first one wins),
RFC 3676 format=flowed text (soft line breaks joined), and a backlog of 200 distinct
forwards from one user to one card, each through a real SMTP socket and the worker."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from ingest.mailbox.parsing import parse_email, unflow
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    history,
    inbound_items,
    send,
    wait_for,
)

# --- RFC 3676 unflowing, rule by rule -------------------------------------------------------


def test_a_line_ending_in_a_space_continues_on_the_next_one() -> None:
    # RFC 3676 4.2: a flowed line (trailing space) and the fixed line after it are one
    # paragraph; the space stays (DelSp=no), so words do not run together
    text = "Thank you for the \r\nquote, we will \r\nsign it today.\r\nAnna\r\n"
    assert unflow(text) == "Thank you for the quote, we will sign it today.\nAnna\n"


def test_lines_without_a_trailing_space_stay_as_they_are() -> None:
    assert unflow("Line one\nLine two\n\nLine four") == "Line one\nLine two\n\nLine four"


def test_delsp_yes_deletes_the_space_the_sender_added_to_break_a_word() -> None:
    # RFC 3676 4.2: with DelSp=yes the trailing space of a flowed line is not content
    assert unflow("Donaudampf \r\nschifffahrt\r\n", delsp=True) == "Donaudampfschifffahrt\n"
    assert unflow("Donaudampf \r\nschifffahrt\r\n") == "Donaudampf schifffahrt\n"


def test_space_stuffing_is_removed() -> None:
    # RFC 3676 4.4: a line starting with a space was stuffed; the one space goes
    assert unflow(" From the start \r\n >not a quote\r\n  two spaces\r\n") == (
        "From the start >not a quote\n two spaces\n"
    )


def test_quoted_lines_join_only_at_the_same_quote_depth() -> None:
    # RFC 3676 4.5: quote marks are counted and removed first; a change of depth ends the
    # paragraph even after a flowed line ("quote-depth-wins")
    text = (
        "> You wrote that the \r\n"
        "> price is final.\r\n"
        ">> It is final for \r\n"
        ">> this year \r\n"
        "> only.\r\n"
        "Agreed.\r\n"
    )
    assert unflow(text) == (
        "> You wrote that the price is final.\n>> It is final for this year \n> only.\nAgreed.\n"
    )


def test_a_space_after_the_quote_marks_is_stuffing() -> None:
    # RFC 3676 4.5 with 4.4: "> text" and ">text" are the same quoted text
    assert unflow(">  indented \r\n>more\r\n") == ">  indented more\n"


def test_the_signature_separator_is_no_soft_break() -> None:
    # RFC 3676 4.3: "-- " ends in a space but is neither flowed nor fixed; it stands alone
    text = "Best regards \r\n-- \r\nAnna Sales \r\nAcme Corp\r\n"
    assert unflow(text) == "Best regards \n-- \nAnna Sales Acme Corp\n"
    assert unflow("-- \r\nAnna\r\n", delsp=True) == "-- \nAnna\n"


def test_a_flowed_last_line_is_kept() -> None:
    assert unflow("nothing follows ") == "nothing follows "


# --- Parsing ------------------------------------------------------------------------------


def _mail(headers: str, body: str = "Hello.\r\n", content_type: str = "text/plain") -> bytes:
    head = (
        "From: Anna Sales <anna@example.com>\r\n"
        "To: card@archive.test\r\n"
        "MIME-Version: 1.0\r\n"
        f"Content-Type: {content_type}\r\n"
    )
    return (head + headers + "\r\n" + body).encode()


@pytest.mark.parametrize(
    ("name", "first", "second"),
    [
        ("Subject", "First subject", "Second subject"),
        ("Message-ID", "<first@mail.test>", "<second@mail.test>"),
        ("Date", "Fri, 20 Nov 2026 09:30:00 +0000", "Sat, 21 Nov 2026 10:00:00 +0000"),
        ("In-Reply-To", "<a@mail.test>", "<b@mail.test>"),
        ("References", "<a@mail.test>", "<b@mail.test>"),
        ("Cc", "cc1@acme.com", "cc2@acme.com"),
        ("Reply-To", "r1@acme.com", "r2@acme.com"),
        ("Auto-Submitted", "no", "auto-replied"),
    ],
)
def test_a_repeated_single_value_header_is_read_first_one_wins(
    name: str, first: str, second: str
) -> None:
    parsed = parse_email(_mail(f"{name}: {first}\r\n{name}: {second}\r\n"))
    assert parsed.header(name) == first
    assert parsed.from_problem == ""
    if name == "Subject":
        assert parsed.subject == first
    if name == "Message-ID":
        assert parsed.message_id == first
    if name == "Date":
        assert parsed.date == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    if name == "Cc":
        assert parsed.cc == [("", "cc1@acme.com")]


def test_a_repeated_to_keeps_the_first() -> None:
    parsed = parse_email(_mail("To: second@acme.com\r\n"))  # _mail writes a To already
    assert parsed.to == [("", "card@archive.test")]


def test_two_from_headers_are_still_refused_with_the_reason() -> None:
    parsed = parse_email(_mail("From: Mallory <mallory@evil.test>\r\n"))
    assert parsed.sender is None
    assert parsed.from_problem == "the message has 2 From headers; exactly one is required"


def test_a_flowed_part_of_an_alternative_is_joined() -> None:
    # mail-parser's text is not used for it (it would keep the soft breaks)
    body = (
        "--b\r\n"
        "Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        "Caf\xe9 au lait for every \r\nbody at the meet \r\ning.\r\n"
        "--b\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        "<p>Caf\xe9 au lait for everybody at the meeting.</p>\r\n"
        "--b--\r\n"
    )
    parsed = parse_email(_mail("Subject: x\r\n", body, 'multipart/alternative; boundary="b"'))
    assert parsed.text == "Café au lait for everybody at the meeting."
    assert "Café au lait" in parsed.html


def test_a_flowed_note_above_an_attached_message_is_joined() -> None:
    body = (
        "--b\r\n"
        "Content-Type: text/plain; format=flowed\r\n\r\n"
        "See the customer's mail \r\nattached.\r\n"
        "--b\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
        "From: John Doe <john.doe@acme.com>\r\n"
        "Subject: Order\r\n"
        "Content-Type: text/plain; format=flowed\r\n\r\n"
        "Please send the \r\ninvoice.\r\n"
        "--b--\r\n"
    )
    parsed = parse_email(_mail("Subject: Fwd: Order\r\n", body, 'multipart/mixed; boundary="b"'))
    assert parsed.text == "See the customer's mail attached."
    [attached] = parsed.attached_messages
    assert parse_email(attached).text == "Please send the invoice."


# --- Through a real SMTP socket -----------------------------------------------------------


@pytest.fixture
def anna_card(api: httpx.Client) -> tuple[int, str]:
    anna = create_user(api, "anna@example.com", "Anna Sales")
    card = create_card(api, int(anna["id"]))
    return int(card["id"]), archive_address(api, int(card["id"]))


def test_two_subjects_and_two_message_ids_are_processed_and_the_first_wins(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None, anna_card: tuple[int, str]
) -> None:
    card_id, address = anna_card
    raw = (
        "From: Anna Sales <anna@example.com>\r\n"
        f"To: {address}\r\n"
        "Subject: The first subject\r\n"
        "Message-ID: <first@mail.example.com>\r\n"
        "Date: Fri, 20 Nov 2026 09:30:00 +0000\r\n"
        "Subject: The second subject\r\n"
        "Message-ID: <second@mail.example.com>\r\n"
        "Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Hello, the quote is attached.\r\n"
    ).encode()
    send(smtp_server, raw, address, "anna@example.com")
    [entry] = wait_for(lambda: history(api, card_id), what="the history entry")
    assert entry["subject"] == "The first subject"
    assert entry["message_id"] == "<first@mail.example.com>"
    assert entry["occurred_at"] == "2026-11-20T09:30:00Z"
    assert entry["text"].startswith("Hello, the quote is attached.")
    assert [i["status"] for i in inbound_items(api)] == ["processed"]


def test_a_flowed_forward_lands_with_its_lines_joined(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None, anna_card: tuple[int, str]
) -> None:
    # Thunderbird's inline forward, sent as format=flowed (its default): lines of at most
    # 72 characters, the soft breaks marked by a trailing space, ">" lines space-stuffed
    card_id, address = anna_card
    body = (
        "Please archive this. \r\n"
        "\r\n"
        "-------- Forwarded Message --------\r\n"
        "Subject: \tDelivery of the new machines\r\n"
        "Date: \tWed, 3 Nov 2021 15:51:30 +0100\r\n"
        "From: \tJohn Doe <john.doe@acme.com>\r\n"
        "To: \tanna@example.com\r\n"
        "\r\n"
        "\r\n"
        "Hello Anna, the three machines we ordered in September should be \r\n"
        "delivered on Monday morning; please make sure that somebody is at \r\n"
        "the loading dock from eight o'clock.\r\n"
        "\r\n"
        " From the second week on, the old ones can be collected.\r\n"
        "-- \r\n"
        "John Doe \r\n"
        "Acme Corp\r\n"
    )
    raw = (
        "From: Anna Sales <anna@example.com>\r\n"
        f"To: {address}\r\n"
        "Subject: Fwd: Delivery of the new machines\r\n"
        "Message-ID: <flowed@mail.example.com>\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n" + body
    ).encode()
    send(smtp_server, raw, address, "anna@example.com")
    [entry] = wait_for(lambda: history(api, card_id), what="the history entry")
    assert entry["forwarded"] is True
    assert entry["from"] == {"name": "John Doe", "address": "john.doe@acme.com"}
    assert entry["subject"] == "Delivery of the new machines"
    assert entry["text"].startswith(
        "Hello Anna, the three machines we ordered in September should be delivered on "
        "Monday morning; please make sure that somebody is at the loading dock from eight "
        "o'clock.\n\nFrom the second week on, the old ones can be collected.\n"
    )
    assert entry["text"].rstrip().endswith("\nJohn Doe Acme Corp")  # below the "-- " line


# --- A backlog -----------------------------------------------------------------------------

BACKLOG = 200


def _forward(n: int, address: str, sent: datetime) -> bytes:
    """Anna forwards the customer's mail number `n` (an old one) to the card."""
    original = datetime(2025, 1, 6, 9, 0, tzinfo=UTC) + timedelta(days=n, minutes=7 * n)
    body = (
        "-------- Forwarded Message --------\r\n"
        f"Subject: \tOrder {n:03d}: delivery\r\n"
        f"Date: \t{format_datetime(original)}\r\n"
        f"From: \tCustomer {n} <customer{n}@acme.com>\r\n"
        "To: \tanna@example.com\r\n"
        "\r\n"
        f"Hello Anna, this is about order {n:03d}: please deliver it to hall {n % 7}.\r\n"
    )
    return (
        "From: Anna Sales <anna@example.com>\r\n"
        f"To: {address}\r\n"
        f"Subject: Fwd: Order {n:03d}: delivery\r\n"
        f"Message-ID: <backlog-{n}@mail.example.com>\r\n"
        f"Date: {format_datetime(sent)}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n" + body
    ).encode()


def test_a_backlog_of_200_distinct_forwards_to_one_card_is_all_processed(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None, anna_card: tuple[int, str]
) -> None:
    # Given Anna archiving 200 old customer mails to one deal card within 10 minutes (the
    # default loop limit: distinct mails are never counted together)
    card_id, address = anna_card
    start = datetime.now(UTC)
    with smtplib.SMTP(*smtp_server, timeout=30) as client:  # one session, as a client would
        for n in range(BACKLOG):
            sent = start + timedelta(seconds=3 * n)  # their Date headers span 10 minutes
            client.sendmail("anna@example.com", [address], _forward(n, address, sent))
    # Then every one is processed, none held, and the card has 200 e-mail entries
    wait_for(lambda: _statuses(api) == {"processed": BACKLOG}, timeout=120, what="all forwards")
    response = api.get(f"/api/cards/{card_id}/history", params={"limit": 1000})
    entries = [e for e in response.json()["items"] if e["type"] == "email"]
    assert len(entries) == BACKLOG
    assert {e["from"]["address"] for e in entries} == {
        f"customer{n}@acme.com" for n in range(BACKLOG)
    }
    assert all(e["forwarded"] for e in entries)


def _statuses(api: httpx.Client) -> dict[str, int]:
    response = api.get("/api/inbound", params={"limit": 1000})
    assert response.status_code == 200, response.text
    found: dict[str, int] = {}
    for item in response.json()["items"]:
        found[item["status"]] = found.get(item["status"], 0) + 1
    return found
