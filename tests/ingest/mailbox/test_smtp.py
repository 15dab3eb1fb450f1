"""The SMTP front door over a real socket: RCPT refusals, SIZE/552, 451 on store failure."""

from __future__ import annotations

import smtplib
from email.policy import SMTP

import httpx
import pytest
from sqlalchemy import func, select

from crm_core.models import HistoryEntry, InboundItem
from ingest.runtime import Runtime
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    history,
    make_mail,
    send,
    wait_for,
)
from tests.support.locks import database_write_locked


@pytest.fixture
def card_address(api: httpx.Client) -> tuple[dict[str, object], str]:
    user = create_user(api, "anna@example.com", "Anna Sales")
    card = create_card(api, int(str(user["id"])))
    return card, archive_address(api, int(str(card["id"])))


def test_unknown_address_is_refused_at_rcpt(smtp_server: tuple[str, int]) -> None:
    # Given a well-formed token that no card has
    unknown = "a" * 32 + "@archive.test"
    # When a client tries to deliver to it, Then RCPT is answered 550 5.1.1
    with smtplib.SMTP(*smtp_server) as client:
        client.ehlo()
        client.mail("anna@example.com")
        code, reply = client.rcpt(unknown)
        assert (code, reply[:5]) == (550, b"5.1.1")
        # postmaster is accepted (RFC 5321 4.5.1; test_delivery_reports.py), only ours
        code, _ = client.rcpt("postmaster@example.org")
        assert code == 550


def test_revoked_address_is_refused_at_rcpt(
    api: httpx.Client, smtp_server: tuple[str, int], card_address: tuple[dict[str, object], str]
) -> None:
    card, address = card_address
    send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    assert api.delete(f"/api/cards/{card['id']}/archive-address").status_code == 204
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    assert refused.value.recipients[address][0] == 550


def test_rotated_address_works_for_the_grace_period_only(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int]
) -> None:
    user = create_user(api, "anna@example.com")
    card = create_card(api, user["id"])
    first = archive_address(api, card["id"])
    second = archive_address(api, card["id"])  # rotate, default grace: the old one still works
    assert first != second
    for address in (first, second):
        send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    # With no grace left, rotation stops the previous address at once.
    runtime.settings.archive_grace_seconds = 0
    third = archive_address(api, card["id"])
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(smtp_server, make_mail("anna@example.com", second), second, "anna@example.com")
    send(smtp_server, make_mail("anna@example.com", third), third, "anna@example.com")


def test_size_is_advertised_and_oversize_gets_552(
    smtp_server: tuple[str, int], card_address: tuple[dict[str, object], str], runtime: Runtime
) -> None:
    _card, address = card_address
    limit = runtime.settings.smtp_max_message_bytes
    big = make_mail("anna@example.com", address, body="x" * 70 + "\n")
    big.set_content(("y" * 76 + "\n") * (limit // 77 + 10))
    with smtplib.SMTP(*smtp_server) as client:
        client.ehlo()
        assert int(client.esmtp_features["size"]) == limit
        # A client that declares the size is refused at MAIL FROM (RFC 1870)...
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("anna@example.com", [address], big.as_bytes(policy=SMTP))
        assert refused.value.smtp_code == 552
    with smtplib.SMTP(*smtp_server) as client:
        # ...and one that does not is refused at the end of DATA.
        client.ehlo()
        client.mail("anna@example.com")
        client.rcpt(address)
        code, reply = client.data(big.as_bytes(policy=SMTP))
        assert code == 552, reply
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundItem)) == 0


@pytest.mark.settings(db_lock_timeout_seconds=1.0)  # the write lock is held on purpose
def test_database_unavailable_during_data_answers_451_and_writes_nothing(
    api: httpx.Client,
    runtime: Runtime,
    smtp_server: tuple[str, int],
    worker: None,
    card_address: tuple[dict[str, object], str],
) -> None:
    card, address = card_address
    mail = make_mail("anna@example.com", address, subject="Retry me")
    with smtplib.SMTP(*smtp_server) as client:
        client.ehlo()
        client.mail("anna@example.com")
        assert client.rcpt(address)[0] == 250
        # When the database cannot take the write during DATA
        with database_write_locked(runtime.engine):
            code, reply = client.data(mail.as_bytes(policy=SMTP))
        # Then the client is told to retry, without any internal detail
        assert code == 451
        assert reply == b"4.3.0 Temporary failure, please try again later"
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundItem)) == 0
        assert session.scalar(select(func.count()).select_from(HistoryEntry)) == 0
    # And the client's retry, once the database is back, is accepted and processed once.
    send(smtp_server, mail, address, "anna@example.com")
    entries = wait_for(lambda: history(api, int(str(card["id"]))), what="history entry")
    assert [e["subject"] for e in entries] == ["Retry me"]


def test_database_down_at_rcpt_answers_451(
    runtime: Runtime, card_address: tuple[dict[str, object], str]
) -> None:
    from ingest.mailbox.smtp_handler import make_archive_handler
    from tests.conftest import serve_smtp

    _card, address = card_address
    # A front door whose database is unreachable (nothing listens on port 9).
    dead = runtime.settings.model_copy(
        update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    )
    from crm_core.db import make_engine, make_session_factory
    from ingest.inbound import GroupCommit

    engine = make_engine(dead.effective_database_url(), 1.0)
    handler = make_archive_handler(
        GroupCommit(make_session_factory(engine)), runtime.pipeline.enqueue, "archive.test"
    )
    server = serve_smtp(runtime, handler)
    host_port = next(server)
    try:
        with smtplib.SMTP(*host_port) as client:
            client.ehlo()
            client.mail("anna@example.com")
            code, reply = client.rcpt(address)
            assert (code, reply) == (451, b"4.3.0 Temporary failure, please try again later")
    finally:
        server.close()
        engine.dispose()


def test_recipients_are_checked_and_stored_in_canonical_form(
    api: httpx.Client,
    runtime: Runtime,
    smtp_server: tuple[str, int],
    card_address: tuple[dict[str, object], str],
) -> None:
    _card, address = card_address
    token, _at, _domain = address.partition("@")
    with smtplib.SMTP(*smtp_server) as client:
        client.ehlo()
        client.mail("anna@example.com")
        # Not our domain: no relaying, whatever the local part
        assert client.rcpt(f"{token}@elsewhere.example")[:1] == (550,)
        assert client.rcpt(f"{token}@elsewhere.example")[1].startswith(b"5.7.1")
        # Malformed: too long, or with control characters
        assert client.rcpt("x" * 300 + f"+{token}@archive.test")[0] == 501
        assert client.rcpt(f"a\x01+{token}@archive.test")[0] == 501
        # Relays may change case and users may add a tag: still the card, stored canonically
        assert client.rcpt(f"Sales+{token.upper()}@ARCHIVE.test")[0] == 250
        assert client.data(make_mail("anna@example.com", address).as_bytes(policy=SMTP))[0] == 250
    with runtime.sessions() as session:
        assert list(session.scalars(select(InboundItem.recipient))) == [address]


def test_null_sender_is_recorded_as_such(
    runtime: Runtime, smtp_server: tuple[str, int], card_address: tuple[dict[str, object], str]
) -> None:
    _card, address = card_address
    with smtplib.SMTP(*smtp_server) as client:
        client.sendmail(
            "<>", [address], make_mail("anna@example.com", address).as_bytes(policy=SMTP)
        )
    with runtime.sessions() as session:
        [meta] = list(session.scalars(select(InboundItem.meta)))
    assert meta["mail_from"] == ""
