"""SMTP door hardening over real sockets: smuggling probes, line, recipient, connection and
idle limits, and the per-client brake on unknown-address guessing.
"""

from __future__ import annotations

import smtplib
import time
from concurrent.futures import Future
from email.policy import SMTP

import httpx
import pytest
from sqlalchemy import func, select

from crm_core import card_cases
from crm_core.db import read_only
from crm_core.models import InboundItem, utcnow
from ingest import inbound
from ingest.inbound import NewInput
from ingest.mailbox.smtp_handler import ArchiveHandler
from ingest.mailbox.smtp_limits import HarvestGuard, client_key
from ingest.runtime import Runtime
from tests.conftest import serve_smtp
from tests.support.helpers import archive_address, create_card, create_user, make_mail, wait_for
from tests.support.smtp import SENDER, Raw, door, raw_session, stored_raws

# 1. SMTP smuggling: only CRLF "." CRLF ends DATA ------------------------------------------

SMUGGLED = (
    b"MAIL FROM:<ceo@bank.example>\r\n"
    b"RCPT TO:<{address}>\r\n"
    b"DATA\r\n"
    b"From: ceo@bank.example\r\nSubject: smuggled\r\n\r\nSmuggled body\r\n"
)
PROBES = [b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r", b"\r\n.\r"]


@pytest.mark.parametrize("probe", PROBES, ids=repr)
def test_smuggling_probes_do_not_end_the_message(
    runtime: Runtime, smtp_server: tuple[str, int], address: str, probe: bytes
) -> None:
    # Given a message whose text holds a would-be end of DATA followed by a second message
    head = make_mail(SENDER, address, subject="Real one").as_bytes(policy=SMTP)
    smuggled = SMUGGLED.replace(b"{address}", address.encode())
    with raw_session(smtp_server) as client:
        assert client.reply().startswith(b"220")
        assert client.command(b"EHLO client.example").startswith(b"250")
        assert client.command(f"MAIL FROM:<{SENDER}>".encode()).startswith(b"250")
        assert client.command(f"RCPT TO:<{address}>".encode()).startswith(b"250")
        assert client.command(b"DATA").startswith(b"354")
        # When it is sent in one go, ending with the one real CRLF "." CRLF
        client.send(head.rstrip(b"\r\n") + probe + smuggled + b".\r\n")
        # Then there is one answer for one message, and the next reply is QUIT's
        assert client.reply().startswith(b"250 2.0.0")
        assert client.command(b"QUIT").startswith(b"221")
    # And one item is stored, holding the would-be second message as its text
    [raw] = stored_raws(runtime)
    assert b"Subject: Real one" in raw
    assert b"MAIL FROM:<ceo@bank.example>" in raw
    assert b"Smuggled body" in raw


# 3. Limits ---------------------------------------------------------------------------------


def test_command_line_length(runtime: Runtime) -> None:
    long_noop = b"NOOP " + b"x" * 600  # over RFC 5321's 512 octets
    with door(runtime) as server, raw_session(server) as client:
        client.reply()
        assert client.command(long_noop) == b"500 5.5.2 Line too long\r\n"
        assert client.command(b"NOOP").startswith(b"250")  # the session goes on
    with door(runtime, smtp_max_command_bytes=1000) as server, raw_session(server) as client:
        client.reply()
        assert client.command(long_noop).startswith(b"250")
        assert client.command(b"NOOP " + b"x" * 1000) == b"500 5.5.2 Line too long\r\n"


def test_text_lines_longer_than_the_rfc_are_accepted_up_to_the_setting(
    runtime: Runtime, address: str
) -> None:
    # Given a message with a 5,000-octet line (RFC 5321 says 1,000; real mailers send more)
    long_line = b"y" * 4998
    raw = make_mail(SENDER, address, subject="Long").as_bytes(policy=SMTP) + long_line + b"\r\n"
    with door(runtime) as server, smtplib.SMTP(*server, timeout=30) as client:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(address)
        # Then it is accepted and stored as sent
        assert client.data(raw)[0] == 250
    assert long_line + b"\r\n" in stored_raws(runtime)[0]
    # But beyond the setting: 500 5.5.2 after DATA, nothing stored, and the session goes on
    with (
        door(runtime, smtp_max_line_bytes=2000) as server,
        smtplib.SMTP(*server, timeout=30) as client,
    ):
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(address)
        assert client.data(raw.replace(b"Long", b"Too long")) == (
            500,
            b"5.5.2 Line too long in message text",
        )
        assert len(stored_raws(runtime)) == 1
        client.mail(SENDER)
        client.rcpt(address)
        assert (
            client.data(make_mail(SENDER, address, subject="Short").as_bytes(policy=SMTP))[0] == 250
        )
    assert len(stored_raws(runtime)) == 2


def test_recipients_beyond_the_limit_get_452(runtime: Runtime, api: httpx.Client) -> None:
    user = create_user(api, SENDER)
    addresses = [archive_address(api, create_card(api, user["id"])["id"]) for _ in range(4)]
    with door(runtime, smtp_max_recipients=3) as server, smtplib.SMTP(*server, timeout=30) as c:
        c.ehlo()
        c.mail(SENDER)
        assert [c.rcpt(a)[0] for a in addresses[:3]] == [250, 250, 250]
        assert c.rcpt(addresses[3]) == (452, b"4.5.3 Too many recipients")
        assert c.data(make_mail(SENDER, addresses[0]).as_bytes(policy=SMTP))[0] == 250
        # The next message in the session starts a new count
        c.mail(SENDER)
        assert c.rcpt(addresses[3])[0] == 250
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundItem)) == 3


def greeting(server: tuple[str, int], source: str) -> tuple[Raw, bytes]:
    client = Raw(server, source)
    return client, client.reply()


def test_connections_beyond_the_limits_get_421(runtime: Runtime) -> None:
    too_many = b"421 4.7.0 Too many connections, try later\r\n"
    with door(runtime, smtp_max_connections=3, smtp_max_connections_per_ip=2) as server:
        open_ = []
        try:
            for source in ("127.0.0.1", "127.0.0.1"):
                client, reply = greeting(server, source)
                open_.append(client)
                assert reply.startswith(b"220")
            # A third from the same address: refused at the greeting, and closed
            client, reply = greeting(server, "127.0.0.1")
            assert (reply, client.reply()) == (too_many, b"")
            client.close()
            # Another address may still come in, up to the total
            client, reply = greeting(server, "127.0.0.2")
            open_.append(client)
            assert reply.startswith(b"220")
            client, reply = greeting(server, "127.0.0.3")
            assert (reply, client.reply()) == (too_many, b"")
            client.close()
            # Once one leaves, its place is free again
            open_.pop(0).close()

            def admitted() -> bool:
                client, reply = greeting(server, "127.0.0.1")
                open_.append(client)
                return reply.startswith(b"220")

            wait_for(admitted, what="a free connection slot")
        finally:
            for client in open_:
                client.close()


def test_an_idle_session_is_closed_with_421(runtime: Runtime) -> None:
    with door(runtime, smtp_idle_seconds=2.0) as server, raw_session(server) as client:
        assert client.reply().startswith(b"220")
        assert client.command(b"EHLO client.example").startswith(b"250")
        # When the client says nothing: 421 and the connection is closed
        assert client.reply() == b"421 4.4.2 archive.test Idle timeout, closing connection\r\n"
        assert client.reply() == b""


def test_a_slow_but_steady_data_transfer_is_not_idle(runtime: Runtime, address: str) -> None:
    with door(runtime, smtp_idle_seconds=2.0) as server, raw_session(server) as client:
        client.reply()
        client.command(b"EHLO client.example")
        client.command(f"MAIL FROM:<{SENDER}>".encode())
        client.command(f"RCPT TO:<{address}>".encode())
        assert client.command(b"DATA").startswith(b"354")
        client.send(make_mail(SENDER, address).as_bytes(policy=SMTP))
        # A line every half second for 4 seconds: longer than the idle limit in all
        for n in range(8):
            time.sleep(0.5)
            client.send(b"line %d\r\n" % n)
        client.send(b".\r\n")
        assert client.reply().startswith(b"250")


# 4. Directory harvesting -------------------------------------------------------------------


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unknown_address_guessing_is_braked_per_client(runtime: Runtime, address: str) -> None:
    ticks = Ticks()
    lookups: list[str] = []

    # The handler as make_archive_handler builds it, with the address lookup counted.
    def is_live_token(token_hash: str) -> bool:
        lookups.append(token_hash)
        with read_only(runtime.sessions) as session:
            return card_cases.card_for_archive_token(session, token_hash, utcnow()) is not None

    def store(inputs: list[NewInput]) -> Future[list[int]]:
        return inbound.submit(runtime.commits, inputs)

    handler = ArchiveHandler(
        is_live_token,
        store,
        runtime.pipeline.enqueue,
        "archive.test",
        harvest=HarvestGuard(limit=3, window_seconds=600, clock=ticks),
    )
    server_gen = serve_smtp(runtime, handler)
    server = next(server_gen)
    unknown = [f"{c * 32}@archive.test" for c in "abcd"]
    try:
        with smtplib.SMTP(*server, timeout=30) as client:
            client.ehlo()
            client.mail(SENDER)
            assert [client.rcpt(a)[0] for a in unknown[:3]] == [550, 550, 550]
            assert len(lookups) == 3
            # Then every RCPT from that client, even to a live address, is deferred unlooked-up
            brake = (450, b"4.7.1 Too many unknown recipients, try later")
            assert client.rcpt(address) == brake
            assert client.rcpt(unknown[3]) == brake
            assert len(lookups) == 3
        # Another client is not braked
        with smtplib.SMTP(*server, timeout=30, source_address=("127.0.0.2", 0)) as client:
            client.ehlo()
            client.mail(SENDER)
            assert client.rcpt(address)[0] == 250
        # And once the window has passed, the first client may deliver again
        ticks.now += 600
        with smtplib.SMTP(*server, timeout=30) as client:
            client.ehlo()
            client.mail(SENDER)
            assert client.rcpt(address)[0] == 250
    finally:
        server_gen.close()


def test_harvest_guard_window_and_memory_bound() -> None:
    ticks = Ticks()
    guard = HarvestGuard(limit=2, window_seconds=10, clock=ticks)
    guard.record_unknown("a")
    ticks.now += 6
    guard.record_unknown("a")
    assert guard.blocked("a")
    ticks.now += 5  # the first miss has left the window: one left, under the limit
    assert not guard.blocked("a")
    # A flood of clients does not grow the table past its bound
    guard.MAX_CLIENTS = 100
    for n in range(1000):
        guard.record_unknown(f"10.0.{n // 256}.{n % 256}")
    assert len(guard._misses) <= 100
    # Off when the limit is 0
    off = HarvestGuard(limit=0, window_seconds=10, clock=ticks)
    off.record_unknown("a")
    assert not off.blocked("a")


def test_clients_are_counted_by_address_or_ipv6_64() -> None:
    assert client_key(("192.0.2.7", 25)) == "192.0.2.7"
    assert client_key(("::ffff:192.0.2.7", 25, 0, 0)) == "192.0.2.7"
    assert client_key(("2001:db8:1:2::5", 25, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key(("2001:db8:1:2:ffff::9", 25, 0, 0)) == "2001:db8:1:2::/64"
