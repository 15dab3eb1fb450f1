"""Forward extraction on tricky shapes: replies, quoted older forwards, look-alike notes,
and what the sanitiser lets through (unit level; the pipeline tests cover the rest)."""

from __future__ import annotations

import pytest

from ingest.mailbox.forwarding import find_original
from ingest.mailbox.html_text import sanitize_html

GMAIL_FORWARD = """---------- Forwarded message ---------
From: John Doe <john.doe@acme.com>
Date: Wed, Oct 27, 2021 at 9:31 AM
Subject: Integer consequat non purus
To: <bessie.berry@acme.com>

Aenean quis diam urna.
"""


def test_an_outlook_reply_quoting_the_customer_is_not_a_forward() -> None:
    reply = (
        "Thanks, we will ship Monday.\n\n-----Original Message-----\n"
        "From: Customer <c@customer.example>\nSent: Monday, 1 November 2021 10:00\n"
        "To: anna@example.com\nSubject: Order\n\nWhere is my order?\n"
    )
    assert find_original(reply, "RE: Order") is None


def test_a_reply_quoting_an_older_forward_is_not_a_forward() -> None:
    quoted = "Sounds good.\n\n" + "".join(f"> {line}\n" for line in GMAIL_FORWARD.splitlines())
    assert find_original(quoted, "Re: Fwd: deal") is None


def test_the_unquoted_forward_wins_over_a_quoted_one_above_it() -> None:
    older = "".join(f"> {line}\n" for line in GMAIL_FORWARD.replace("john.doe", "old").splitlines())
    found = find_original(older + "\n" + GMAIL_FORWARD, "Fwd: Integer consequat non purus")
    assert found is not None and found.sender == ("John Doe", "john.doe@acme.com")


def test_a_header_like_note_without_an_address_does_not_hide_the_forward() -> None:
    note = "Flight details:\nFrom: London Heathrow\nTo: Paris CDG\nDate: 3 Nov 2021\n\n"
    found = find_original(note + GMAIL_FORWARD, "Fwd: Integer consequat non purus")
    assert found is not None
    assert found.sender == ("John Doe", "john.doe@acme.com")
    assert found.note.startswith("Flight details:")


def test_nested_forwards_the_outermost_is_the_original() -> None:
    inner = GMAIL_FORWARD.replace("John Doe <john.doe@acme.com>", "Carol <carol@inner.example>")
    outer = GMAIL_FORWARD.replace("Aenean quis diam urna.\n", "See below.\n\n" + inner)
    found = find_original(outer, "Fwd: Fwd: Integer consequat non purus")
    assert found is not None and found.sender == ("John Doe", "john.doe@acme.com")
    assert "carol@inner.example" in found.text


@pytest.mark.parametrize(
    "markup",
    [
        "<html><body>&lt;script&gt;alert(1)&lt;/script&gt;</body></html>",
        "&lt;img src=x onerror=alert(1)&gt;<p>x</p>",
        "<xmp><img src=x onerror=alert(1)></xmp>",
        "<noembed><img src=x onerror=alert(1)></noembed>",
        "<plaintext><img src=x onerror=alert(1)>",
        '<p onclick="x()"><a href="javascript:alert(1)">a</a><iframe src="x"></iframe></p>',
        '<svg><script>alert(1)</script></svg><img src="http://x/" onerror="alert(1)">',
    ],
)
def test_sanitised_html_has_no_live_script(markup: str) -> None:
    clean = sanitize_html(markup)
    assert "<script" not in clean and "<img src=x" not in clean
    assert "onerror=" not in clean.replace("onerror=alert(1)&gt;", "")
    assert "onclick" not in clean and "javascript:" not in clean and "<iframe" not in clean


def test_control_characters_in_html_do_not_break_reading() -> None:
    """Found by the fuzz test: libxml2 refuses control characters; they are dropped."""
    from ingest.mailbox.html_text import html_to_text

    assert html_to_text("<p>a\x01b\x0b</p>") == "ab"
    assert sanitize_html("<p>a\x01b</p>") == "<p>ab</p>"


def test_a_web_form_pasted_in_a_mail_is_not_a_forward() -> None:
    """An address and a date among unknown labels, with no separator and no forward
    subject: not a header block (found by review with a case the suite did not have)."""
    form = "Name: Bob\nEmail: bob@x.com\nPhone: 06 12 34 56 78\nDate: 27/10/2021\n\nHello"
    assert find_original(form, "New lead") is None


def test_a_date_after_the_forward_is_not_the_originals() -> None:
    """Thai Outlook writes the Buddhist year (2564 = 2021): read as a date in the future,
    it is no date of the original; the sender and subject still are read."""
    thai = (
        "________________________________\nจาก: สมชาย <somchai@client.co.th>\n"
        "ส่ง: 27 ตุลาคม 2564 9:31\nถึง: anna@example.com\nเรื่อง: ใบเสนอราคา\n\nสวัสดี\n"
    )
    found = find_original(thai, "FW: ใบเสนอราคา", "Asia/Bangkok")
    assert found is not None and found.sender == ("สมชาย", "somchai@client.co.th")
    assert found.subject == "ใบเสนอราคา" and found.date is None


def test_a_body_of_many_date_like_blocks_reads_a_bounded_number_of_dates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed date costs dateparser tens of milliseconds: thousands of address-and-date
    blocks in one body (hostile, or a log pasted in a mail) must not hold a worker."""
    from ingest.mailbox import forwarding
    from ingest.mailbox.dates import parse_date as real

    calls: list[str] = []

    def counted(text: str, timezone: str = "UTC", languages: tuple[str, ...] = ()) -> object:
        calls.append(text)
        return real(text, timezone, languages)

    monkeypatch.setattr(forwarding, "parse_date", counted)
    text = "Xx: a@b.com\nYy: 1999 99:99 qq zz\n\n" * 500
    assert find_original(text, "Fwd: x") is None
    assert len(calls) == forwarding.MAX_DATE_TRIES
