"""Every forwarded-mail fixture (shared/fixtures/forwarded) through a real SMTP socket and the
worker: the card's history shows the customer's original message, per the fixtures' README.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.support.helpers import archive_address, create_card, history, send, wait_for

FORWARDED = FIXTURES / "forwarded"
DEFAULT_SUBJECT = "Fwd: Integer consequat non purus"


def cases() -> list[tuple[str, str]]:
    found = []
    for body in sorted(FORWARDED.glob("*_body*.txt")):
        if body.name == "outlook_live_body.txt":  # one body, sent with each localised subject
            found += [
                (body.name, s.name) for s in sorted(FORWARDED.glob("outlook_live_*_subject.txt"))
            ]
            continue
        subject = FORWARDED / body.name.replace("_body", "_subject")
        found.append((body.name, subject.name if subject.exists() else ""))
    return found


CASES = cases()


def test_the_fixture_folder_is_there() -> None:
    assert len(CASES) >= 70, "tests need ../shared/fixtures/forwarded beside the checkout"


@pytest.mark.parametrize(("body_file", "subject_file"), CASES)
def test_forwarded_fixture_lands_as_the_original(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None, body_file: str, subject_file: str
) -> None:
    # Given Anna, a user, forwarding a customer's mail to her card's archive address
    response = api.post(
        "/api/users",
        json={"email": "anna@example.com", "name": "Anna Sales", "timezone": "Europe/Paris"},
    )
    anna = response.json()
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    subject = (FORWARDED / subject_file).read_text().strip() if subject_file else DEFAULT_SUBJECT
    mail = EmailMessage()
    mail["From"] = "Anna Sales <anna@example.com>"
    mail["To"] = address
    mail["Subject"] = subject
    mail["Date"] = format_datetime(datetime.now().astimezone())
    mail["Message-ID"] = make_msgid(domain="mail.example.com")
    mail.set_content((FORWARDED / body_file).read_text(encoding="utf-8"))
    send(smtp_server, mail, address, "anna@example.com")

    [entry] = wait_for(lambda: history(api, card["id"]), timeout=30, what="the history entry")
    assert entry["logged_by"] == {
        "id": anna["id"],
        "name": "Anna Sales",
        "address": "anna@example.com",
    }
    if "variant_4" in body_file:  # not a forward: stored as the message it is
        assert entry["forwarded"] is False
        assert entry["from"]["address"] == "anna@example.com"
        assert entry["subject"] == subject
        return
    assert entry["forwarded"] is True
    assert entry["from"] == {"name": "John Doe", "address": "john.doe@acme.com"}
    assert entry["subject"] == "Integer consequat non purus"
    assert entry["text"].startswith("Aenean quis diam urna.")
    assert "2021-01-01" <= entry["occurred_at"] < "2024-01-01"  # the original's own date
    recipients = [p["address"] for p in entry["to"]]
    if body_file.startswith("outlook_2019"):  # Outlook 2019 embeds no To/Cc
        assert recipients == [] and entry["cc"] == []
    elif "variant_1" in body_file:
        assert recipients == ["bessie.berry@acme.com", "suzanne@globex.corp"]
        assert entry["cc"] == []
    else:
        assert recipients[0] == "bessie.berry@acme.com"  # the README's "to (first)"
        if not body_file.startswith("ionos"):  # IONOS embeds no Cc
            assert entry["cc"] == [
                {"name": "Walter Sheltan", "address": "walter.sheltan@acme.com"},
                {"name": "Nicholas", "address": "nicholas@globex.corp"},
            ]
    if "variant_2" in body_file:
        assert entry["note"].startswith("Praesent suscipit egestas hendrerit.")
        assert "Aenean" not in entry["note"]
    else:
        assert entry["note"] == ""
    # The customer became a contact of the card
    contacts = api.get(f"/api/cards/{card['id']}").json()["contacts"]
    assert "john.doe@acme.com" in [e for c in contacts for e in c["emails"]]


OURS = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "forwarded").glob("*.txt"))
NOTES = {"outlook_ru.txt": "Посмотрите, пожалуйста", "apple_mail_nl.txt": "Zie hieronder."}


@pytest.mark.parametrize("body", OURS, ids=[p.name for p in OURS])
def test_forwards_in_more_languages(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None, body: Path
) -> None:
    """Hebrew, Russian, Polish, Italian, Dutch, Japanese, Turkish, written in the style of
    each client; a date without an offset is the forwarder's local time (Europe/Paris)."""
    response = api.post(
        "/api/users",
        json={"email": "anna@example.com", "name": "Anna Sales", "timezone": "Europe/Paris"},
    )
    card = create_card(api, response.json()["id"])
    address = archive_address(api, card["id"])
    mail = EmailMessage()
    mail["From"] = "anna@example.com"
    mail["To"] = address
    mail["Subject"] = DEFAULT_SUBJECT
    mail.set_content(body.read_text(encoding="utf-8"))
    send(smtp_server, mail, address, "anna@example.com")
    [entry] = wait_for(lambda: history(api, card["id"]), timeout=30, what="the history entry")
    assert entry["forwarded"] is True
    assert entry["from"] == {"name": "John Doe", "address": "john.doe@acme.com"}
    assert entry["subject"] == "Integer consequat non purus"
    assert entry["occurred_at"] == "2021-10-27T07:31:00Z"
    assert [p["address"] for p in entry["to"]] == ["bessie.berry@acme.com"]
    assert [p["address"] for p in entry["cc"]] == [
        "walter.sheltan@acme.com",
        "nicholas@globex.corp",
    ]
    assert entry["text"].startswith("Aenean quis diam urna.")
    assert entry["note"].startswith(NOTES.get(body.name, "")) and (body.name in NOTES) == bool(
        entry["note"]
    )
