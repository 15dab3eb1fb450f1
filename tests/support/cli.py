"""`crm-ingest` processes of their own: the command with an environment, several at once, and
free loopback ports for them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator


def crm_ingest(args: list[str], env: dict[str, str], **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "ingest.cli", *args],
        env={**os.environ, **env},
        text=True,
        **kwargs,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def processes(commands: list[tuple[list[str], dict[str, str]]], **kwargs: object) -> Iterator[None]:
    started = [crm_ingest(args, env, **kwargs) for args, env in commands]
    try:
        yield
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=60) for process in started]
        assert codes == [0] * len(started), codes


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False
