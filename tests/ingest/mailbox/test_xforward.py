"""Trusted relays at the SMTP door: Postfix's XFORWARD (parsing, offered to trusted relays
only, used for the brake and the stored meta) and the relay's Received line as fallback."""

from __future__ import annotations

import smtplib
from email.policy import SMTP

import httpx
import pytest
from sqlalchemy import select

from crm_core.models import InboundItem
from ingest.mailbox.smtp_origin import forwarded_ip, parse_xforward, received_client, xtext_decode
from ingest.runtime import Runtime
from ingest.settings import SettingsError, load_settings
from tests.support.helpers import archive_address, create_card, create_user, make_mail, wait_for

TRUSTED = pytest.mark.settings(smtp_trusted_relays="127.0.0.1/32, 10.0.0.0/8")


# --- XFORWARD parsing ---------------------------------------------------------------------


def test_a_postfix_xforward_line_is_parsed() -> None:
    line = "NAME=mail.example.com ADDR=192.0.2.10 PORT=41234 PROTO=ESMTP HELO=mail.example.com"
    assert parse_xforward(line) == {
        "NAME": "mail.example.com",
        "ADDR": "192.0.2.10",
        "PORT": "41234",
        "PROTO": "ESMTP",
        "HELO": "mail.example.com",
    }
    assert parse_xforward("ident=ABC123+2B1 source=REMOTE") == {
        "IDENT": "ABC123+1",
        "SOURCE": "REMOTE",
    }


def test_unavailable_values_are_none() -> None:
    assert parse_xforward("NAME=[TEMPUNAVAIL] ADDR=[UNAVAILABLE] HELO=[unavailable]") == {
        "NAME": None,
        "ADDR": None,
        "HELO": None,
    }


def test_xtext_is_decoded() -> None:
    assert xtext_decode("a+2Bb+3Dc+20d") == "a+b=c d"
    for bad in ("a+2", "a+zz", "a=b", "caf\u00e9"):
        with pytest.raises(ValueError):
            xtext_decode(bad)


@pytest.mark.parametrize(
    "line",
    ["", "   ", "ADDR", "FOO=bar", "ADDR=1.2.3.4 EVIL=1", "HELO=a+zz", "PORT=123456", "ADDR=+0A"],
)
def test_bad_xforward_lines_are_refused(line: str) -> None:
    with pytest.raises(ValueError):
        parse_xforward(line)


def test_forwarded_addresses() -> None:
    assert forwarded_ip("192.0.2.10") == "192.0.2.10"
    assert forwarded_ip("IPV6:2001:DB8::1") == "2001:db8::1"
    assert forwarded_ip("ipv6:::1") == "::1"
    assert forwarded_ip("not-an-ip") is None
    assert forwarded_ip(None) is None


# --- the relay's Received line ------------------------------------------------------------


def test_the_topmost_received_line_of_postfix_names_the_client() -> None:
    raw = (
        b"Received: from mail.sender.test (mail.sender.test [192.0.2.10])\r\n"
        b"\tby relay.example.com (Postfix) with ESMTP id 4B2C1\r\n"
        b"\tfor <x@archive.test>; Sat, 6 Dec 2025 02:00:00 +0000 (UTC)\r\n"
        b"Received: from inner.test (inner.test [198.51.100.1]) by mail.sender.test\r\n"
        b"From: a@sender.test\r\n\r\nReceived: from body.test ([203.0.113.1])\r\n"
    )
    assert received_client(raw) == ("192.0.2.10", "mail.sender.test")


def test_received_line_forms() -> None:
    ipv6 = b"Received: from helo.test (unknown [IPv6:2001:db8::7]) by relay; date\n\nbody"
    assert received_client(ipv6) == ("2001:db8::7", "helo.test")
    exim = b"Received: from host.test ([192.0.2.44] helo=claimed.test)\n by relay with esmtp\n\n"
    assert received_client(exim) == ("192.0.2.44", "claimed.test")
    local = b"Received: by relay.example.com (Postfix, from userid 0) id 1; date\r\n\r\n"
    assert received_client(local) is None
    assert received_client(b"From: a@b.test\r\n\r\nReceived: from x ([1.2.3.4])\r\n") is None
    not_ip = b"Received: from x (y [not.an.ip]) by z\r\n\r\n"
    assert received_client(not_ip) is None


# --- the setting --------------------------------------------------------------------------


def test_trusted_relays_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_SMTP_TRUSTED_RELAYS", "127.0.0.1/32, ::1, 10.1.0.0/16")
    assert [str(n) for n in load_settings().trusted_relay_networks] == [
        "127.0.0.1/32",
        "::1/128",
        "10.1.0.0/16",
    ]
    monkeypatch.setenv("CRM_SMTP_TRUSTED_RELAYS", "127.0.0.1/32, postfix.local")
    with pytest.raises(SettingsError, match="CRM_SMTP_TRUSTED_RELAYS"):
        load_settings()


# --- over a socket ------------------------------------------------------------------------


def _address(api: httpx.Client) -> str:
    user = create_user(api, "anna@example.com")
    return archive_address(api, int(create_card(api, int(user["id"]))["id"]))


def _items(runtime: Runtime) -> list[InboundItem]:
    with runtime.sessions() as session:
        return list(session.scalars(select(InboundItem).order_by(InboundItem.id)))


def test_xforward_is_neither_offered_nor_accepted_from_others(
    smtp_server: tuple[str, int],
) -> None:
    with smtplib.SMTP(*smtp_server) as client:
        client.ehlo("relay.test")
        assert not client.has_extn("xforward")
        code, reply = client.docmd("XFORWARD", "ADDR=192.0.2.10")
        assert (code, reply[:5]) == (550, b"5.7.0")


@TRUSTED
def test_xforward_from_a_trusted_relay_names_the_client(
    smtp_server: tuple[str, int], api: httpx.Client, runtime: Runtime
) -> None:
    address = _address(api)
    with smtplib.SMTP(*smtp_server) as client:
        code, _ = client.docmd("XFORWARD", "ADDR=192.0.2.10")
        assert code == 503  # HELO/EHLO first
        client.ehlo("relay.test")
        assert client.esmtp_features["xforward"].split() == [
            "NAME",
            "ADDR",
            "PORT",
            "PROTO",
            "HELO",
            "IDENT",
            "SOURCE",
        ]
        assert client.docmd("XFORWARD", "NAME=mail.sender.test ADDR=IPV6:2001:db8::5")[0] == 250
        assert client.docmd("XFORWARD", "HELO=mail.sender.test SOURCE=REMOTE")[0] == 250
        assert client.docmd("XFORWARD", "BOGUS=1")[0] == 501
        client.mail("anna@example.com")
        assert client.docmd("XFORWARD", "ADDR=192.0.2.99")[0] == 503  # inside MAIL
        client.rcpt(address)
        client.data(make_mail("anna@example.com", address).as_bytes(policy=SMTP))
        # The attributes end with the transaction: the next mail is the relay's own.
        client.sendmail(
            "anna@example.com",
            [address],
            make_mail("anna@example.com", address).as_bytes(policy=SMTP),
        )
    wait_for(lambda: len(_items(runtime)) == 2, 10, "two items")
    first, second = (item.meta for item in _items(runtime))
    assert first["peer"] == "2001:db8::5"
    assert first["helo"] == "mail.sender.test"
    assert (first["relay"], first["relay_helo"], first["client_from"]) == (
        "127.0.0.1",
        "relay.test",
        "xforward",
    )
    assert second["client_from"] == "relay"  # no XFORWARD and no Received line: the relay
    assert second["peer"] == "127.0.0.1"


@TRUSTED
def test_without_xforward_the_relays_received_line_names_the_client(
    smtp_server: tuple[str, int], api: httpx.Client, runtime: Runtime
) -> None:
    address = _address(api)
    received = (
        b"Received: from mail.sender.test (mail.sender.test [192.0.2.77])\r\n"
        b"\tby relay.test (Postfix) with ESMTP id 1; Sat, 6 Dec 2025 02:00:00 +0000\r\n"
    )
    raw = received + make_mail("anna@example.com", address).as_bytes(policy=SMTP)
    with smtplib.SMTP(*smtp_server) as client:
        client.sendmail("anna@example.com", [address], raw)
    item = wait_for(lambda: _items(runtime), 10, "the item")[0]
    assert (item.meta["peer"], item.meta["helo"]) == ("192.0.2.77", "mail.sender.test")
    assert (item.meta["relay"], item.meta["client_from"]) == ("127.0.0.1", "received")


@TRUSTED
def test_the_brake_counts_the_forwarded_client_not_the_relay(
    smtp_server: tuple[str, int], api: httpx.Client
) -> None:
    address = _address(api)
    unknown = "a" * 32 + "@archive.test"
    with smtplib.SMTP(*smtp_server) as client:
        client.ehlo("relay.test")
        for _ in range(12):  # one harvester behind the relay
            client.docmd("XFORWARD", "ADDR=203.0.113.66")
            client.mail("guess@example.net")
            code, reply = client.rcpt(unknown)
            client.rset()
            assert code in (550, 450)
        assert (code, reply[:5]) == (450, b"4.7.1")  # braked: it passed the limit
        # Another client through the same relay is not braked; unknown stays a 5xx.
        client.docmd("XFORWARD", "ADDR=192.0.2.10")
        client.mail("anna@example.com")
        assert client.rcpt(unknown)[0] == 550
        assert client.rcpt(address)[0] == 250
        client.rset()
        # The harvester still is.
        client.docmd("XFORWARD", "ADDR=203.0.113.66")
        client.mail("guess@example.net")
        assert client.rcpt(address)[0] == 450
