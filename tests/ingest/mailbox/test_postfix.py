"""Debian's Postfix in front of the SMTP door, as deployed (issue 19, failures 4 and 5).

Postfix runs with a configuration, queue and data directory of its own (a temp folder), on
a free loopback port, relaying the archive domain to our door with XFORWARD; every other
domain (the senders', for bounces) goes to a small SMTP sink of the test's own. Retry
timers are long on purpose: any 4xx from the door would hold a mail for minutes, so "it
arrives within seconds" means nothing was deferred. The test's clients stand for remote
ones through Postfix's XCLIENT (all connections come from 127.0.0.1 here).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from crm_core.models import InboundItem
from ingest.runtime import Runtime
from tests.conftest import LoopThread
from tests.support.dns_server import TestDns
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    history,
    make_mail,
    wait_for,
)

POSTFIX = shutil.which("postfix") or (
    "/usr/sbin/postfix" if Path("/usr/sbin/postfix").exists() else None
)

pytestmark = [
    pytest.mark.skipif(
        POSTFIX is None, reason="Postfix is not installed (scripts/test installs it)"
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="Postfix's master must start as root"),
    pytest.mark.settings(smtp_trusted_relays="127.0.0.1/32"),
]

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
smtp      unix  - - n -    - smtp
relay     unix  - - n -    - smtp
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.test
mydomain = relay.test
myorigin = relay.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
disable_dns_lookups = yes
smtp_dns_support_level = disabled
maillog_file_prefixes = {base}
maillog_file = {base}/maillog
# The three lines of docs/operations.md's "Postfix in front":
relay_domains = archive.test
transport_maps = inline:{{ archive.test=smtp:[127.0.0.1]:{door} }}
smtp_send_xforward_command = yes
# Everything else (the bounces) to the test's sink.
relayhost = [127.0.0.1]:{sink}
# The test's clients stand for remote ones.
smtpd_authorized_xclient_hosts = 127.0.0.0/8
# Long retry timers: a deferred mail would wait minutes.
queue_run_delay = 300s
minimal_backoff_time = 300s
maximal_backoff_time = 600s
"""


@dataclass
class Sink:
    """What the sink received (bounces to the senders)."""

    mails: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mails.append(envelope)
        return "250 OK"

    def bounces_to(self, address: str) -> list[bytes]:
        return [
            bytes(m.original_content or b"")
            for m in self.mails
            if m.mail_from in ("", "<>") and address in m.rcpt_tos
        ]


@dataclass
class Postfix:
    port: int
    base: Path
    sink: Sink

    def log(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def deferred(self) -> list[Path]:
        return [p for p in (self.base / "queue" / "deferred").rglob("*") if p.is_file()]

    def send(
        self, message: EmailMessage, sender: str, recipients: list[str], client_ip: str
    ) -> dict[str, tuple[int, bytes]]:
        """Submit as if from `client_ip` (XCLIENT); Postfix accepts every archive.test RCPT."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.ehlo("submit.test")
            code, reply = client.docmd("XCLIENT", f"ADDR={client_ip} NAME=[UNAVAILABLE]")
            assert code == 220, reply
            client.ehlo_resp = None
            client.ehlo(f"mail.{sender.rpartition('@')[2]}")
            raw = message.as_bytes(policy=SMTP_POLICY)
            return client.sendmail(sender, recipients, raw)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _postfix(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert POSTFIX is not None
    return subprocess.run(
        [POSTFIX, "-c", str(base / "conf"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def postfix(smtp_server: tuple[str, int]) -> Iterator[Postfix]:
    # Postfix's daemons run as the `postfix` user and need to traverse to their queue: a
    # folder of /tmp with 0755 (pytest's temp folders are 0700 to root).
    base = Path(tempfile.mkdtemp(prefix="crm-postfix-"))
    base.chmod(0o755)
    loops = LoopThread()
    sink = Sink()
    sink_server = loops.run(
        loops.loop.create_server(lambda: SMTP(sink, hostname="sink.test"), "127.0.0.1", 0)
    )
    try:
        for name in ("conf", "queue", "data"):
            (base / name).mkdir()
        shutil.chown(base / "data", "postfix")
        port = _free_port()
        (base / "conf" / "master.cf").write_text(MASTER_CF.format(port=port))
        (base / "conf" / "main.cf").write_text(
            MAIN_CF.format(
                base=base,
                door=smtp_server[1],
                sink=sink_server.sockets[0].getsockname()[1],
            )
        )
        started = _postfix(base, "start")
        if started.returncode != 0:
            log = (base / "maillog").read_text() if (base / "maillog").exists() else ""
            pytest.fail(f"postfix start failed: {started.stderr}\n{log}")
        instance = Postfix(port, base, sink)
        wait_for(lambda: _listening(port), 15, "Postfix's smtpd")
        try:
            yield instance
        finally:
            _postfix(base, "stop")
            print(f"Postfix's log:\n{instance.log()}")  # shown when the test fails
    finally:
        loops.run(_close(sink_server))
        loops.close()
        shutil.rmtree(base, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def _close(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


def _items(runtime: Runtime) -> list[InboundItem]:
    with runtime.sessions() as session:
        return list(session.scalars(select(InboundItem).order_by(InboundItem.id)))


def _card(api: httpx.Client, title: str) -> tuple[int, str]:
    user = create_user(api, f"{title.lower().replace(' ', '.')}@example.com")
    card = create_card(api, int(user["id"]), title=title)
    return int(card["id"]), archive_address(api, int(card["id"]))


def test_one_mail_relays_through_postfix_to_two_cards(
    api: httpx.Client, runtime: Runtime, worker: None, postfix: Postfix
) -> None:
    sender = "anna@example.com"  # a CRM user, responsible of both cards
    user = create_user(api, sender)
    cards = [create_card(api, int(user["id"]), title=t) for t in ("First", "Second")]
    first_id, second_id = (int(card["id"]) for card in cards)
    first, second = (archive_address(api, card_id) for card_id in (first_id, second_id))
    mail = make_mail(sender, first, subject="Both cards")
    mail.replace_header("To", f"{first}, {second}")
    assert postfix.send(mail, sender, [first, second], "192.0.2.20") == {}

    def on_both_cards() -> bool:
        return all(
            any(entry.get("subject") == "Both cards" for entry in history(api, card_id))
            for card_id in (first_id, second_id)
        )

    wait_for(on_both_cards, 20, "the mail on both cards")
    items = _items(runtime)
    assert len(items) == 2
    for item in items:  # the original client, and the relay kept beside it
        assert item.meta["peer"] == "192.0.2.20"
        assert item.meta["relay"] == "127.0.0.1"
        assert item.meta["client_from"] == "xforward"
    assert "status=deferred" not in postfix.log()


def test_twenty_unknown_addresses_through_postfix_do_not_delay_a_valid_mail(
    api: httpx.Client, runtime: Runtime, postfix: Postfix
) -> None:
    _card_id, address = _card(api, "Valid deal")
    for number in range(20):  # a harvester, each guess a mail of its own
        unknown = f"{number:032x}@archive.test"
        postfix.send(
            make_mail("guess@example.net", unknown), "guess@example.net", [unknown], "203.0.113.66"
        )
    wait_for(lambda: postfix.log().count("to=<") >= 20, 20, "Postfix to try the 20 guesses")
    started = time.monotonic()
    postfix.send(
        make_mail("anna@example.com", address), "anna@example.com", [address], "192.0.2.20"
    )
    wait_for(lambda: len(_items(runtime)) == 1, 15, "the valid mail at the door")
    assert time.monotonic() - started < 15
    log = postfix.log()
    valid_lines = [line for line in log.splitlines() if f"to=<{address}>" in line]
    assert valid_lines and all("status=sent" in line for line in valid_lines), valid_lines


def test_spf_is_judged_on_the_original_client_behind_postfix(
    runtime: Runtime, api: httpx.Client, postfix: Postfix, test_dns: TestDns
) -> None:
    _card_id, address = _card(api, "Spf deal")
    test_dns.txt("spf-pass.test", "v=spf1 ip4:192.0.2.10 -all")
    test_dns.txt("_dmarc.spf-pass.test", "v=DMARC1; p=reject")
    test_dns.txt("spf-fail.test", "v=spf1 ip4:198.51.100.7 -all")
    test_dns.txt("_dmarc.spf-fail.test", "v=DMARC1; p=reject")
    try:
        good = make_mail("alice@spf-pass.test", address, subject="Passes")
        postfix.send(good, "alice@spf-pass.test", [address], "192.0.2.10")
        bad = make_mail("mallory@spf-fail.test", address, subject="Fails")
        postfix.send(bad, "mallory@spf-fail.test", [address], "192.0.2.10")
        item = wait_for(lambda: _items(runtime), 15, "the passing mail at the door")[0]
        assert item.meta["peer"] == "192.0.2.10"
        assert item.meta["relay"] == "127.0.0.1"
        assert b"spf=pass" in item.raw.split(b"\r\n\r\n", 1)[0]
        bounce = wait_for(
            lambda: postfix.sink.bounces_to("mallory@spf-fail.test"), 15, "the DMARC bounce"
        )[0]
        assert b"5.7.1" in bounce
        assert len(_items(runtime)) == 1
    finally:
        test_dns.clear()


def test_an_unknown_address_makes_postfix_bounce_at_once(
    api: httpx.Client, postfix: Postfix
) -> None:
    unknown = "f" * 32 + "@archive.test"
    started = time.monotonic()
    postfix.send(make_mail("bob@example.org", unknown), "bob@example.org", [unknown], "192.0.2.30")
    bounce = wait_for(lambda: postfix.sink.bounces_to("bob@example.org"), 15, "the bounce")[0]
    assert time.monotonic() - started < 15
    assert b"5.1.1" in bounce
    log = postfix.log()
    assert f"to=<{unknown}>" in log and "status=bounced" in log
    assert "status=deferred" not in log
    assert postfix.deferred() == []
