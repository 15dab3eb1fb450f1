"""SMTP door limits over real sockets (issue 20): a session's lifetime and junk-command limit,
DATA spooled to a temporary file past a threshold (stored byte for byte, the file gone after
the session whatever happens), the size cap, and the door's memory budget.
"""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import socket
import struct
import time
from email.policy import SMTP
from pathlib import Path

from ingest.mailbox.spool import SPOOL_SUBDIR, MemoryBudget, Spool
from ingest.runtime import Runtime
from tests.support.helpers import make_mail, wait_for
from tests.support.smtp import SENDER, Raw, door, raw_session, stored_raws

LIFETIME_OVER = b"421 4.4.2 archive.test Session time limit reached, closing connection\r\n"
TOO_MANY_JUNK = b"421 4.7.0 archive.test Too many commands without mail, closing connection\r\n"


def closed(client: Raw) -> bool:
    """The server closed the connection (an orderly close, or a reset)."""
    try:
        return client.reply() == b""
    except ConnectionResetError:
        return True


def start_mail(client: Raw, address: str) -> None:
    assert client.reply().startswith(b"220")
    assert client.command(b"EHLO client.example").startswith(b"250")
    assert client.command(f"MAIL FROM:<{SENDER}>".encode()).startswith(b"250")
    assert client.command(f"RCPT TO:<{address}>".encode()).startswith(b"250")
    assert client.command(b"DATA").startswith(b"354")


# 1. Lifetime and junk commands ----------------------------------------------------------------


def test_a_session_sending_noop_forever_ends_at_its_lifetime(runtime: Runtime) -> None:
    with (
        door(runtime, smtp_session_max_seconds=1.0, smtp_max_junk_commands=10**6) as server,
        raw_session(server) as client,
    ):
        assert client.reply().startswith(b"220")
        assert client.command(b"EHLO client.example").startswith(b"250")
        # A NOOP every 50 ms (each resets the idle timer), for up to 20 s, until the answer
        # is another (the 421 written between two NOOPs is read as the next one's answer)
        for _ in range(400):
            answer = client.command(b"NOOP")
            if answer != b"250 OK\r\n":
                break
            time.sleep(0.05)
        assert answer == LIFETIME_OVER
        assert closed(client)


def test_junk_commands_end_the_session_with_421(runtime: Runtime) -> None:
    with door(runtime, smtp_max_junk_commands=7) as server, raw_session(server) as client:
        assert client.reply().startswith(b"220")
        assert client.command(b"EHLO client.example").startswith(b"250")  # not junk
        # Commands that move no mail forward, and refused ones, count
        assert client.command(b"NOOP").startswith(b"250")
        assert client.command(b"RSET").startswith(b"250")
        assert client.command(b"HELP").startswith(b"250")
        assert client.command(b"VRFY anna@example.com").startswith(b"252")
        assert client.command(b"EXPN staff").startswith(b"502")
        assert client.command(b"XYZZY").startswith(b"500")
        # The seventh is answered, then the session is told why and closed
        assert client.command(b"RCPT TO:<someone@archive.test>").startswith(b"503")
        assert client.reply() == TOO_MANY_JUNK
        assert closed(client)


def test_each_mail_accepted_starts_the_junk_count_again(runtime: Runtime, address: str) -> None:
    # A relay keeping one session for many mails sends RSET between them: no abuse
    with door(runtime, smtp_max_junk_commands=3) as server, raw_session(server) as client:
        assert client.reply().startswith(b"220")
        assert client.command(b"EHLO relay.example").startswith(b"250")
        for n in range(5):
            mail = make_mail(SENDER, address, subject=f"Mail {n}").as_bytes(policy=SMTP)
            assert client.command(b"RSET").startswith(b"250")
            assert client.command(b"NOOP").startswith(b"250")
            assert client.command(f"MAIL FROM:<{SENDER}>".encode()).startswith(b"250")
            assert client.command(f"RCPT TO:<{address}>".encode()).startswith(b"250")
            assert client.command(b"DATA").startswith(b"354")
            assert client.command(mail + b".").startswith(b"250 2.0.0")
        assert len(stored_raws(runtime)) == 5
        # Without mail, the third junk command ends it
        assert client.command(b"NOOP").startswith(b"250")
        assert client.command(b"NOOP").startswith(b"250")
        assert client.command(b"NOOP").startswith(b"250")
        assert client.reply() == TOO_MANY_JUNK
        assert closed(client)


# 2. DATA spooled to a temporary file -----------------------------------------------------------


def spool_files(runtime: Runtime) -> list[str]:
    """This process's open files in the door's spool folder (the door runs in the test's
    process): the spool's files have no name there, or lose it at once."""
    folder = str(runtime.settings.data_dir / SPOOL_SUBDIR) + os.sep
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith(folder):
            found.append(target)
    return found


def named_files(runtime: Runtime) -> list[str]:
    folder = runtime.settings.data_dir / SPOOL_SUBDIR
    return os.listdir(folder) if folder.exists() else []


def large_mail(address: str, size: int) -> bytes:
    """A message of about `size` bytes (CRLF) with what the transparency of DATA must keep:
    lines starting with dots, a lone dot (the client stuffs them, the door unstuffs), 8-bit
    text, long lines."""
    head = make_mail(SENDER, address, subject="Large").as_bytes(policy=SMTP)
    lines = [
        b".leading dot\r\n",
        b"..two dots\r\n",
        b".\r\n",
        "Grüße, ½ €\r\n".encode(),
        b"z" * 5000 + b"\r\n",
    ]
    body = b""
    n = 0
    while len(head) + len(body) < size:
        body += b"line %d\r\n" % n + lines[n % len(lines)]
        n += 1
    return head + body


def stuffed(raw: bytes) -> bytes:
    """`raw` as sent after DATA (RFC 5321 4.5.2): a dot more before each line's first dot."""
    return re.sub(rb"(?m)^\.", b"..", raw)


def test_a_message_above_the_spool_threshold_is_stored_byte_for_byte(
    runtime: Runtime, address: str
) -> None:
    raw = large_mail(address, 1_000_000)
    with (
        door(runtime, smtp_spool_threshold_bytes=64 * 1024) as server,
        smtplib.SMTP(*server, timeout=30) as client,
    ):
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(address)
        assert client.data(raw)[0] == 250  # smtplib dot-stuffs; the door unstuffs
    [stored] = stored_raws(runtime)
    # What was sent, under our one Received line
    trace = stored[: len(stored) - len(raw)]
    assert stored[len(trace) :] == raw
    assert trace.startswith(b"Received: from ") and trace.count(b"Received:") == 1
    assert trace.endswith(b"\r\n") and b"\r\n\r\n" not in trace


def test_the_spool_file_is_gone_after_the_session_also_after_a_drop(
    runtime: Runtime, address: str
) -> None:
    raw = stuffed(large_mail(address, 600_000))
    text, rest = raw[:500_000], raw[500_000:]
    with door(runtime, smtp_spool_threshold_bytes=64 * 1024) as server:
        # A message past the threshold is in a file while its text arrives...
        with raw_session(server) as client:
            start_mail(client, address)
            client.send(text)
            wait_for(lambda: len(spool_files(runtime)) == 1, what="the spool file")
            client.send(rest + b".\r\n")
            assert client.reply().startswith(b"250 2.0.0")
            # ...and the file is gone once it is answered
            assert spool_files(runtime) == []
        assert len(stored_raws(runtime)) == 1
        # A client that drops in the middle of DATA leaves no file either
        with raw_session(server) as client:
            start_mail(client, address)
            client.send(text)
            wait_for(lambda: len(spool_files(runtime)) == 1, what="the spool file")
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_for(lambda: spool_files(runtime) == [], what="the spool file to go")
        assert named_files(runtime) == []
        assert len(stored_raws(runtime)) == 1


def test_the_size_cap_still_answers_552_and_keeps_nothing(runtime: Runtime, address: str) -> None:
    raw = large_mail(address, 300_000)
    with (
        door(
            runtime, smtp_spool_threshold_bytes=64 * 1024, smtp_max_message_bytes=200_000
        ) as server,
        smtplib.SMTP(*server, timeout=30) as client,
    ):
        client.ehlo()
        assert int(client.esmtp_features["size"]) == 200_000
        # Declared with SIZE: refused at MAIL FROM
        assert client.mail(SENDER, [f"SIZE={len(raw)}"]) == (
            552,
            b"5.3.4 Message size exceeds fixed limit",
        )
        # Not declared: read to its end (spooled, then dropped), refused after DATA
        client.rset()
        client.mail(SENDER)
        client.rcpt(address)
        assert client.data(raw) == (552, b"5.3.4 Message size exceeds fixed limit")
        assert spool_files(runtime) == []
        # And the session goes on
        client.mail(SENDER)
        client.rcpt(address)
        assert client.data(make_mail(SENDER, address).as_bytes(policy=SMTP))[0] == 250
    assert len(stored_raws(runtime)) == 1


# 3. The memory budget (the objects the door uses, on a real folder) ------------------------------


def test_past_the_memory_budget_a_spool_goes_to_its_file_at_once(tmp_path: Path) -> None:
    budget = MemoryBudget(100)
    with Spool(tmp_path, 1000, budget) as first, Spool(tmp_path, 1000, budget) as second:
        first.write(b"a" * 90)
        assert (first.spooled, budget.in_use) == (False, 90)
        # Under its own threshold, but past what all sessions together may hold
        second.write(b"b" * 20)
        assert (second.spooled, budget.in_use) == (True, 90)
        second.write(b"c" * 5)
        assert second.getvalue() == b"b" * 20 + b"c" * 5
        first.write(b"d" * 10)
        assert (first.spooled, budget.in_use) == (False, 100)
        assert first.getvalue() == b"a" * 90 + b"d" * 10
        # Past its own threshold a spool moves what it held to the file, and gives it back
        first.write(b"e" * 950)
        assert (first.spooled, budget.in_use) == (True, 0)
        assert first.getvalue() == b"a" * 90 + b"d" * 10 + b"e" * 950
    assert budget.in_use == 0


def test_messages_being_stored_wait_for_room_in_the_budget() -> None:
    async def scenario() -> list[str]:
        budget = MemoryBudget(100)
        events: list[str] = []

        async def store(name: str, size: int, go: asyncio.Event) -> None:
            async with budget.hold(size):
                events.append(f"{name} in")
                await go.wait()
            events.append(f"{name} out")

        go_a, go_b, go_c = asyncio.Event(), asyncio.Event(), asyncio.Event()
        a = asyncio.create_task(store("a", 60, go_a))
        await asyncio.sleep(0)
        b = asyncio.create_task(store("b", 60, go_b))  # 120 > 100: waits for a
        await asyncio.sleep(0.01)
        events.append("a done")
        go_a.set()
        await asyncio.sleep(0.01)
        go_b.set()
        await b
        await a
        # One larger than the whole budget goes when no other is being stored
        c = asyncio.create_task(store("c", 500, go_c))
        await asyncio.sleep(0.01)
        go_c.set()
        await c
        assert budget.in_use == 0
        return events

    assert asyncio.run(scenario()) == [
        "a in",
        "a done",
        "a out",
        "b in",
        "b out",
        "c in",
        "c out",
    ]
