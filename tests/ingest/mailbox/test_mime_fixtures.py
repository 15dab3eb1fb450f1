"""Raw messages from the wild (shared/fixtures/mime) through the real pipeline.

Each must end processed or rejected with a clear reason: no crash, no hang, nothing lost.
The .eml files go over SMTP (line ends made CRLF, as any relay does); the Outlook .msg,
which is not MIME and has lines no SMTP server takes, is stored as an IMAP poller would.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ingest import inbound
from ingest.mailbox.parsing import parse_email
from ingest.runtime import Runtime
from tests.conftest import FIXTURES
from tests.support.helpers import archive_address, create_card, create_user, history, send, wait_for

MIME = FIXTURES / "mime"
EML = sorted(p.name for p in MIME.glob("*.eml"))

# A delivery status notification: history as a bounce, never a customer message.
EXPECTED_BOUNCES = {"mail_malformed_2.eml"}

# Messages that are not customer mail, and why (the rest must be processed).
EXPECTED_REJECTIONS = {
    "mail_test_5.eml": "bulk message (Precedence: bulk)",
    "mail_test_16.eml": "bulk message (Precedence: junk)",
    # An address shown as the name of another: which one wrote it? (strict RFC 5322 parsing;
    # Python 3.13's getaddresses(strict=True) finds no address in these either.)
    "mail_test_15.eml": "the From header is malformed (invalid address in address-list): "
    "'purchasing@aquillaindustries.com <do-not-reply@ncs.gov.ng>'",
    "mail_test_19.eml": "the From header is malformed (invalid address in address-list): "
    "'alice@example.com <bob@example.com>'",
}


# An Italian Outlook forward ("I: Ordine", "Da: … Inviato: … A: … Oggetto:").
EXPECTED_FORWARDS = {
    "mail_test_7.eml": (
        "Ordine",
        {"name": "export@agade.info", "address": "chiarodiluce@gmail.com"},
        "Ciao sere mi puoi dire",
    ),
}

# What a person reads in some of them (encoded words, GB2312, KOI8-R...), checked by eye.
EXPECTED_HEADERS = {
    "mail_test_1.eml": ("письмо уведом-е", "служба ФНС Даниил Суворов", "suvorov.s@nalg.ru"),
    "mail_test_12.eml": ("代开各地增值税发票", "张先生", "baoguan@hotmail.com"),
    "mail_test_6.eml": ("Быстрее вкладывайте в золото!", "Время пришло", "noreply@ggg.com"),
    "mail_test_18.eml": (
        "Test for Comma and Name Bugs",
        "LastßlName, FirstName",
        "comma.name@example.com",
    ),
    "mail_test_3.eml": ("Hi there", "Ava Oneil", "Oneil.844@randtelekom.com.tr"),
}


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.mark.parametrize("name", EML)
def test_eml_fixture_is_processed_or_rejected_with_reason(
    name: str, api: httpx.Client, smtp_server: tuple[str, int], worker: None
) -> None:
    raw = crlf((MIME / name).read_bytes())
    parsed = parse_email(raw)
    assert parsed.sender is not None or name in EXPECTED_REJECTIONS
    # Given its sender is a CRM user archiving it to a card
    author = parsed.sender[1] if parsed.sender else "archiver@example.com"
    user = create_user(api, author.lower(), "Fixture sender")
    card = create_card(api, user["id"])
    address = archive_address(api, card["id"])
    send(smtp_server, raw, address, "archiver@example.com")
    item = wait_for(
        lambda: [i for i in inbound_items_of(api) if i["status"] != "received"], timeout=60
    )[0]
    if name in EXPECTED_REJECTIONS:
        assert (item["status"], item["reason"]) == ("rejected", EXPECTED_REJECTIONS[name])
        assert history(api, card["id"]) == []
    elif name in EXPECTED_BOUNCES:
        assert item["status"] == "processed", item
        [entry] = history(api, card["id"])
        assert (entry["type"], entry["subject"]) == ("bounce", parsed.subject)
        shown = api.get(f"/api/cards/{card['id']}").json()
        assert (shown["unread"], shown["focus_reason"]) == (False, None)
        assert api.get(f"/api/users/{user['id']}/counters").json()["incoming"] == 0
    elif name in EXPECTED_FORWARDS:
        # A real forward from the wild: the original comes out, the archiver's words are a note.
        assert item["status"] == "processed", item
        [entry] = history(api, card["id"])
        subject, sender, note_start = EXPECTED_FORWARDS[name]
        assert (entry["forwarded"], entry["subject"], entry["from"]) == (True, subject, sender)
        assert entry["note"].startswith(note_start)
        assert entry["logged_by"]["address"] == author.lower()
    else:
        assert item["status"] == "processed", item
        [entry] = history(api, card["id"])
        assert entry["forwarded"] is False
        assert entry["subject"] == parsed.subject
        assert entry["from"]["address"] == author
        assert entry["text"] == parsed.text
        if name in EXPECTED_HEADERS:
            subject, sender_name, sender_address = EXPECTED_HEADERS[name]
            assert entry["subject"] == subject
            assert entry["from"] == {"name": sender_name, "address": sender_address}


def inbound_items_of(api: httpx.Client) -> list[dict[str, object]]:
    return list(api.get("/api/inbound").json()["items"])


def test_outlook_msg_is_rejected_as_not_a_mail(
    api: httpx.Client, runtime: Runtime, worker: None
) -> None:
    user = create_user(api, "anna@example.com")
    card = create_card(api, user["id"])
    address = archive_address(api, card["id"])
    raw = (MIME / "mail_outlook_1.msg").read_bytes()
    [item_id] = inbound.store(
        runtime.commits,
        [inbound.NewInput(channel="email", raw=raw, dedupe_key="msg-1", recipient=address)],
    )
    runtime.pipeline.enqueue("email", item_id)
    item = wait_for(lambda: [i for i in inbound_items_of(api) if i["status"] != "received"])[0]
    assert item["status"] == "rejected"
    assert item["reason"] == "the message has no From address"
    assert history(api, card["id"]) == []


def test_fixture_folder_is_present() -> None:
    assert Path(MIME / "README.md").exists(), "tests need ../shared beside the checkout"
    assert len(EML) >= 20
