"""A mail's files, HTML and identity: documents of the card (stored once per SHA-256),
inline images kept but not listed, caps with skipped files named, forwards attached as
message/rfc822, HTML-only forwards, and the same Message-ID with other content flagged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from crm_core.models import Blob
from ingest import processing
from ingest.mailbox.processing import CHANNEL as EMAIL
from ingest.mailbox.smtp_handler import make_archive_handler
from ingest.pipeline import declare_actors
from ingest.runtime import Runtime
from tests.conftest import serve_smtp
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

PDF = b"%PDF-1.4\n" + os.urandom(3000)
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(500)


@pytest.fixture
def card(api: httpx.Client) -> Iterator[tuple[dict[str, Any], str]]:
    anna = create_user(api, "anna@example.com", "Anna Sales")
    created = create_card(api, anna["id"])
    yield created, archive_address(api, created["id"])


def mail_with_files(address: str, subject: str = "Quote") -> EmailMessage:
    mail = make_mail("anna@example.com", address, subject=subject, body="The quote, attached.")
    mail.add_alternative(
        '<p onmouseover="steal()">The <b>quote</b> <img src="cid:logo@acme"></p>'
        "<script>alert(1)</script>",
        subtype="html",
    )
    html_part = cast(EmailMessage, mail.get_payload()[1])  # type: ignore[index]
    html_part.add_related(PNG, maintype="image", subtype="png", cid="<logo@acme>")
    mail.add_attachment(PDF, maintype="application", subtype="pdf", filename="devis été.pdf")
    return mail


def test_attachments_become_documents_stored_once(
    api: httpx.Client,
    runtime: Runtime,
    smtp_server: tuple[str, int],
    worker: None,
    card: tuple[dict[str, Any], str],
) -> None:
    created, address = card
    send(smtp_server, mail_with_files(address, "Quote"), address, "anna@example.com")
    send(smtp_server, mail_with_files(address, "Quote again"), address, "anna@example.com")
    wait_for(lambda: len(history(api, created["id"])) == 2, what="both mails")
    entries = history(api, created["id"])
    for entry in entries:
        files = {f["file_name"]: f for f in entry["attachments"]}
        assert files["devis été.pdf"]["sha256"] == hashlib.sha256(PDF).hexdigest()
        assert files["devis été.pdf"]["inline"] is False
        assert files["logo@acme"]["inline"] is True  # shown by the HTML, not a document
        assert "<script" not in entry["html"] and "onmouseover" not in entry["html"]
        assert '<img src="cid:logo@acme">' in entry["html"]
    documents = api.get(f"/api/cards/{created['id']}/documents").json()["items"]
    assert [d["file_name"] for d in documents] == ["devis été.pdf", "devis été.pdf"]
    assert {d["size"] for d in documents} == {len(PDF)}
    download = api.get(f"/api/documents/{documents[0]['id']}/content")
    assert download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert "UTF-8''devis%20%C3%A9t%C3%A9.pdf" in download.headers["content-disposition"]
    with runtime.sessions() as session:  # the PDF and the logo, each once
        assert session.scalar(select(func.count()).select_from(Blob)) == 2


def test_files_over_the_caps_are_skipped_with_the_reason(
    api: httpx.Client, runtime: Runtime, card: tuple[dict[str, Any], str]
) -> None:
    created, address = card
    capped = runtime.settings.model_copy(
        update={"max_attachment_bytes": 2000, "max_attachments_bytes": 3600}
    )

    def small(sessions: sessionmaker[Session], item_id: int) -> None:
        processing.process(sessions, EMAIL, capped, item_id)

    # An email actor of its own (actor names are unique on a broker), with small caps.
    pipeline = declare_actors(
        runtime.pipeline.broker, runtime.sessions, 3, processors={"email_capped": small}
    )
    handler = make_archive_handler(
        runtime.commits,
        lambda _c, item_id: pipeline.enqueue("email_capped", item_id),
        "archive.test",
    )
    server = serve_smtp(runtime, handler)
    mail = make_mail("anna@example.com", address)
    mail.add_attachment(b"a" * 1500, maintype="text", subtype="csv", filename="one.csv")
    mail.add_attachment(b"b" * 1500, maintype="text", subtype="csv", filename="two.csv")
    mail.add_attachment(b"c" * 1500, maintype="text", subtype="csv", filename="three.csv")
    mail.add_attachment(PDF, maintype="application", subtype="pdf", filename="big.pdf")
    send(next(server), mail, address, "anna@example.com")
    server.close()
    running = pipeline.start_worker(threads=1, poll_ms=100)
    try:
        [entry] = wait_for(lambda: history(api, created["id"]), what="history entry")
    finally:
        running.stop()
    assert [f["file_name"] for f in entry["attachments"]] == ["one.csv", "two.csv"]
    assert entry["skipped_attachments"] == [
        {"file_name": "three.csv", "size": 1500, "reason": "the message's files exceed 3600 bytes"},
        {
            "file_name": "big.pdf",
            "size": len(PDF),
            "reason": "larger than the 2000 bytes allowed per file",
        },
    ]


def test_a_forward_attached_as_a_message(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None, card: tuple[dict[str, Any], str]
) -> None:
    created, address = card
    original = EmailMessage()
    original["From"] = "John Doe <john.doe@acme.com>"
    original["To"] = "bessie.berry@acme.com"
    original["Cc"] = "Walter Sheltan <walter.sheltan@acme.com>"
    original["Subject"] = "Integer consequat non purus"
    original["Date"] = "Wed, 27 Oct 2021 09:31:00 +0200"
    original.set_content("Aenean quis diam urna.")
    original.add_attachment(PDF, maintype="application", subtype="pdf", filename="order.pdf")
    mail = make_mail(
        "anna@example.com",
        address,
        subject="Fwd: Integer consequat non purus",
        body="John's order, see the attached mail.",
    )
    mail.add_attachment(original)
    send(smtp_server, mail, address, "anna@example.com")
    [entry] = wait_for(lambda: history(api, created["id"]), what="history entry")
    assert entry["forwarded"] is True
    assert entry["from"] == {"name": "John Doe", "address": "john.doe@acme.com"}
    assert entry["subject"] == "Integer consequat non purus"
    assert entry["occurred_at"] == "2021-10-27T07:31:00Z"
    assert entry["text"].strip() == "Aenean quis diam urna."
    assert entry["note"] == "John's order, see the attached mail."
    assert entry["cc"] == [{"name": "Walter Sheltan", "address": "walter.sheltan@acme.com"}]
    assert [f["file_name"] for f in entry["attachments"]] == ["order.pdf"]


def test_an_html_only_forward(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None, card: tuple[dict[str, Any], str]
) -> None:
    created, address = card
    mail = make_mail("anna@example.com", address, subject="Fwd: Integer consequat non purus")
    mail.set_content(
        '<div dir="ltr">Please handle.<br><br><div class="gmail_quote"><div dir="ltr" '
        'class="gmail_attr">---------- Forwarded message ---------<br>From: <strong '
        'class="gmail_sendername" dir="auto">John Doe</strong> <span dir="auto">&lt;'
        "john.doe@acme.com&gt;</span><br>Date: Wed, Oct 27, 2021 at 9:31 AM<br>Subject: "
        "Integer consequat non purus<br>To: &lt;bessie.berry@acme.com&gt;<br></div><br><br>"
        "<div>Aenean quis diam urna.</div></div></div>",
        subtype="html",
    )
    send(smtp_server, mail, address, "anna@example.com")
    [entry] = wait_for(lambda: history(api, created["id"]), what="history entry")
    assert entry["forwarded"] is True
    assert entry["from"] == {"name": "John Doe", "address": "john.doe@acme.com"}
    assert entry["subject"] == "Integer consequat non purus"
    assert entry["text"] == "Aenean quis diam urna."
    assert entry["note"] == "Please handle."
    assert entry["occurred_at"].startswith("2021-10-27")
    # The stored HTML is the original's: no note, no forward header
    assert "Aenean quis diam urna." in entry["html"]
    assert "Please handle" not in entry["html"] and "Forwarded message" not in entry["html"]


def test_same_message_id_with_other_content_is_kept_and_flagged(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None, card: tuple[dict[str, Any], str]
) -> None:
    created, address = card
    first = make_mail("anna@example.com", address, body="First version.")
    second = make_mail("anna@example.com", address, body="Edited version.")
    second.replace_header("Message-ID", first["Message-ID"])
    send(smtp_server, first, address, "anna@example.com")
    wait_for(lambda: inbound_items(api, "processed"), what="first mail")
    send(smtp_server, second, address, "anna@example.com")
    wait_for(lambda: len(history(api, created["id"])) == 2, what="both mails")
    entries = history(api, created["id"])
    flags = {e["text"].strip(): e["message_id_reused"] for e in entries}
    assert flags == {"First version.": False, "Edited version.": True}
