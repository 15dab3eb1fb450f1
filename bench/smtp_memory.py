"""SMTP door memory under large unfinished messages: the RSS of a `crm-ingest smtp` process
before, at the peak of, and after 20 concurrent sessions that each send a ~23 MiB message
(under the 25 MiB SIZE limit) and then either drop the connection before the final dot, or
finish it (stored in PostgreSQL, 250).

    python -m bench.smtp_memory [--sessions 20] [--mib 23] [--source DIR]

`--source` runs the door from another checkout (e.g. a `git worktree` of an older commit),
to compare; the database and the sending client are this checkout's. Each kind (dropped,
finished) runs twice in a fresh process. Figures in MiB: RSS from /proc (psutil), the peak
as the kernel's high-water mark (VmHWM) of the process so far; "held" is the RSS once every
session has sent its text and waits unfinished.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from bench.common import admin_url, free_port, machine, scratch_postgres, service_env, wait_port
from bench.smtp import SENDER, world

MIB = 1024 * 1024
SETTLE_SECONDS = 3.0  # after the last byte is sent / the last session closed, before reading


def message(size: int, address: str) -> bytes:
    """A message of about `size` bytes: headers and 76-character lines, CRLF."""
    head = (
        f"From: {SENDER}\r\nTo: {address}\r\nSubject: large\r\n"
        "Message-ID: <large@bench.example>\r\n\r\n"
    ).encode()
    line = b"y" * 76 + b"\r\n"
    return head + line * (size // len(line))


@contextmanager
def door(url: str, data_dir: Path, source: Path | None) -> Iterator[tuple[psutil.Process, int]]:
    """`crm-ingest smtp` (from `source` when given); its process and port."""
    port = free_port()
    env = service_env(url, data_dir, CRM_SMTP_PORT=str(port))
    if source is not None:
        env["PYTHONPATH"] = str(source)
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "smtp"],
        env=env,
        cwd=source or Path.cwd(),
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield psutil.Process(process.pid), port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / MIB


def high_water(process: psutil.Process) -> float:
    """VmHWM: the largest RSS the process has had."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reply(sock: socket.socket) -> bytes:
    """One whole (multi-line) reply."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        last = data.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
        if data.endswith(b"\r\n") and last[3:4] != b"-":
            return data


def session(
    port: int, address: str, text: bytes, finish: bool, sent: threading.Barrier
) -> tuple[bytes, float]:
    """One session up to DATA's text; then the final dot and its reply (and the seconds it
    took), or a drop."""
    with socket.create_connection(("127.0.0.1", port), timeout=300) as sock:
        reply(sock)
        for command in (b"EHLO bench.example", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{address}>"):
            sock.sendall((command if isinstance(command, bytes) else command.encode()) + b"\r\n")
            reply(sock)
        sock.sendall(b"DATA\r\n")
        reply(sock)
        view = memoryview(text)
        for start in range(0, len(view), MIB):
            sock.sendall(view[start : start + MIB])
        sent.wait()  # every session has sent its text: the door holds them all
        sent.wait()  # the measurement is taken
        if not finish:
            # A reset, as a client that dies: no orderly end of anything.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b"dropped", 0.0
        started = time.perf_counter()
        sock.sendall(b".\r\n")
        return reply(sock).strip(), time.perf_counter() - started


def phase(
    process: psutil.Process, port: int, address: str, text: bytes, sessions: int, finish: bool
) -> dict[str, Any]:
    before = rss(process)
    sent = threading.Barrier(sessions + 1)
    answers: list[tuple[bytes, float]] = []
    threads = [
        threading.Thread(target=lambda: answers.append(session(port, address, text, finish, sent)))
        for _ in range(sessions)
    ]
    for thread in threads:
        thread.start()
    sent.wait()
    time.sleep(SETTLE_SECONDS)  # the door reads what the kernel still buffers
    held = rss(process)
    sent.wait()
    for thread in threads:
        thread.join()
    time.sleep(SETTLE_SECONDS)
    return {
        "before": before,
        "held": held,
        "peak": high_water(process),
        "after": rss(process),
        "answers": ", ".join(sorted({a.decode(errors="replace")[:40] for a, _ in answers})),
        "slowest": max(seconds for _, seconds in answers),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--mib", type=float, default=23.0, help="size of each message")
    parser.add_argument("--source", type=Path, help="run the door from this checkout")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}; door from {args.source or Path.cwd()}")
    with scratch_postgres(admin_url()) as url, tempfile.TemporaryDirectory() as tmp:
        [address] = world(url)
        text = message(int(args.mib * MIB), address)
        for finish in (False, True):
            what = "finished" if finish else "dropped mid-DATA"
            # A fresh process per kind: its high-water mark is that kind's peak. Two rounds:
            # memory given back shows as an "after" that does not grow.
            with door(url, Path(tmp), args.source) as (process, port):
                for round_ in (1, 2):
                    figures = phase(process, port, address, text, args.sessions, finish)
                    spool = Path(tmp) / "smtp-spool"
                    left = len(os.listdir(spool)) if spool.exists() else 0
                    print(
                        f"{args.sessions} sessions x {args.mib:g} MiB, {what}, round {round_}: "
                        f"RSS before {figures['before']:.0f} MiB, held {figures['held']:.0f}, "
                        f"peak so far {figures['peak']:.0f}, after {figures['after']:.0f}; "
                        f"answers: {figures['answers']} (the slowest after the final dot: "
                        f"{figures['slowest']:.1f} s); files left in the spool: {left}"
                    )


if __name__ == "__main__":
    main()
