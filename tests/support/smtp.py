"""Raw SMTP sessions against the door: a door with its own limits, a client that writes bytes
as they are (pipelining, smuggling probes), and what was stored."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select

from crm_core.models import InboundItem
from ingest.mailbox.smtp_handler import make_archive_handler
from ingest.mailbox.smtp_limits import Clock, DoorLimits
from ingest.runtime import Runtime
from tests.conftest import serve_smtp

SENDER = "anna@example.com"


@contextmanager
def door(
    runtime: Runtime, clock: Clock = time.monotonic, **changes: object
) -> Iterator[tuple[str, int]]:
    """Our SMTP listener with these settings changed, the others as the test run's."""
    for name, value in changes.items():
        setattr(runtime.settings, name, value)
    limits = DoorLimits.from_settings(runtime.settings)
    handler = make_archive_handler(
        runtime.commits, runtime.pipeline.enqueue, "archive.test", limits=limits, clock=clock
    )
    server = serve_smtp(runtime, handler)
    try:
        yield next(server)
    finally:
        server.close()


class Raw:
    """A bare SMTP client: sends bytes exactly as given, reads whole (multi-line) replies."""

    def __init__(self, server: tuple[str, int], source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(server, timeout=30, source_address=(source, 0))
        self.file = self.sock.makefile("rb")

    def reply(self) -> bytes:
        """The next reply, its lines joined; b"" if the server closed the connection."""
        lines: list[bytes] = []
        while True:
            line = self.file.readline()
            if not line:
                return b"".join(lines)
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def start_tls(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_hostname="archive.test")
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@contextmanager
def raw_session(server: tuple[str, int], source: str = "127.0.0.1") -> Iterator[Raw]:
    client = Raw(server, source)
    try:
        yield client
    finally:
        client.close()


def stored_raws(runtime: Runtime) -> list[bytes]:
    with runtime.sessions() as session:
        return list(session.scalars(select(InboundItem.raw).order_by(InboundItem.id)))
