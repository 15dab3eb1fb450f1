"""What a hostile body costs the HTTP door: the resident memory (RSS) of a running
`crm-ingest run` (SMTP + HTTP + worker in one process, on PostgreSQL + Redis) before, at its
peak during, and after each flood, and the slowest /healthz answer meanwhile (a blocked
event loop shows there):

- no token, a 400 MiB body (Content-Length);
- the admin token, a 60 MiB JSON document, by Content-Length and chunked;
- the admin token, 4 x 100 MiB in parallel, by Content-Length and chunked;
- 1,000 connections whose request head never ends (a header line every 2 s, slowloris):
  how many the server has closed after 15 s.

    python -m bench.http_memory

Anchor, same run: the same on a service whose limits are lifted (CRM_API_MAX_BODY_BYTES =
2 GiB, CRM_HTTP_HEADER_TIMEOUT_SECONDS = 300), which reads and parses the token's bodies as
every /api route did before the caps (issue 20's probe: 151 -> 879 MiB for 400 MiB without
a token, 506 MiB for 60 MiB, 1 GiB for 4 x 100 MiB; 1,000 of 1,000 slow heads still open
after 40 s).

The clients are raw sockets that send their body in 256 KiB pieces and stop as soon as an
answer comes or the server closes: "sent" is what the kernel took before that (the socket
buffers of both sides hold a few MiB on loopback; the server reads 64 KiB at most before it
answers a refusal). The peak is the kernel's high-water mark of the process (VmHWM, reset
before each flood). Figures only, no assertion.
"""

from __future__ import annotations

import argparse
import select
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    admin_url,
    crm_ingest,
    free_port,
    machine,
    running,
    scratch_postgres,
    service_env,
    wait_port,
)
from crm_core.db import make_engine, upgrade_schema

MIB = 1024 * 1024
PIECE = b"x" * (256 * 1024)


@dataclass
class Flood:
    name: str
    size: int  # bytes of body each client means to send
    clients: int = 1
    token: bool = True
    chunked: bool = False


FLOODS = [
    Flood("no token, 400 MiB", 400 * MIB, token=False),
    Flood("token, 60 MiB JSON", 60 * MIB),
    Flood("token, 60 MiB JSON, chunked", 60 * MIB, chunked=True),
    Flood("token, 4 x 100 MiB in parallel", 100 * MIB, clients=4),
    Flood("token, 4 x 100 MiB in parallel, chunked", 100 * MIB, clients=4, chunked=True),
]


def memory(pid: int) -> tuple[float, float]:
    """RSS now and its high-water mark, in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux, as root)


def body(size: int) -> Iterator[bytes]:
    """A JSON card of `size` bytes (a long title), in pieces."""
    prefix, suffix = b'{"title": "', b'", "entity_type": "deal", "stage": "new"}'
    yield prefix
    left = size - len(prefix) - len(suffix)
    while left > 0:
        piece = PIECE[:left]
        left -= len(piece)
        yield piece
    yield suffix


def send_one(port: int, flood: Flood, token: str) -> tuple[str, int]:
    """One client: the answer's status line (or how the connection ended) and the bytes of
    body the server let in before answering or closing."""
    length = "Transfer-Encoding: chunked" if flood.chunked else f"Content-Length: {flood.size}"
    auth = f"Authorization: Bearer {token}\r\n" if flood.token else ""
    head = (
        f"POST /api/cards HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"{auth}{length}\r\n\r\n"
    ).encode()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
        try:
            conn.sendall(head)
            for piece in body(flood.size):
                if select.select([conn], [], [], 0)[0]:
                    break  # an answer (or the close) came: a client stops there
                conn.sendall(chunk(piece) if flood.chunked else piece)
                sent += len(piece)
            else:
                if flood.chunked:
                    conn.sendall(b"0\r\n\r\n")
            answer = conn.recv(4096)
        except (BrokenPipeError, ConnectionResetError) as exc:
            try:
                answer = conn.recv(4096)
            except OSError:
                return type(exc).__name__, sent
    status = answer.split(b"\r\n", 1)[0].decode("latin-1") if answer else "closed"
    return status, sent


def chunk(piece: bytes) -> bytes:
    return f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


class Pinger:
    """GET /healthz every 20 ms on its own connection; the slowest answer, in ms."""

    def __init__(self, port: int) -> None:
        self.slowest = 0.0
        self._stop = threading.Event()
        self._client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            started = time.perf_counter()
            self._client.get("/healthz")
            self.slowest = max(self.slowest, (time.perf_counter() - started) * 1000)
            if self._stop.wait(0.02):
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._client.close()
        return self.slowest


def run_flood(pid: int, port: int, flood: Flood, token: str) -> list[str]:
    time.sleep(1)  # let the previous flood's memory settle
    before, _ = memory(pid)
    reset_peak(pid)
    pinger = Pinger(port)
    results: list[tuple[str, int]] = []
    clients = [
        threading.Thread(target=lambda: results.append(send_one(port, flood, token)))
        for _ in range(flood.clients)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    slowest = pinger.stop()
    _, peak = memory(pid)
    time.sleep(1)
    after, _ = memory(pid)
    answers = ", ".join(sorted({status.removeprefix("HTTP/1.1 ") for status, _ in results}))
    most = max(sent for _, sent in results) / MIB
    return [
        flood.name,
        f"{before:.1f}",
        f"{peak:.1f}",
        f"{after:.1f}",
        f"{most:.2f}",
        f"{slowest:.1f}",
        answers,
    ]


SERVICES = {
    "limits at their defaults": {},
    "anchor: limits lifted": {
        "CRM_API_MAX_BODY_BYTES": str(2 * 1024 * MIB),
        "CRM_HTTP_HEADER_TIMEOUT_SECONDS": "300",
    },
}
SLOW_HEADS, SLOW_SECONDS = 1000, 15.0


def slow_heads(pid: int, port: int) -> list[str]:
    """1,000 request heads that never end; how many the server closed within 15 s."""
    before, _ = memory(pid)
    reset_peak(pid)
    conns = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(SLOW_HEADS)]
    for conn in conns:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
        conn.setblocking(False)
    still_open = set(conns)
    ends = time.monotonic() + SLOW_SECONDS
    line = 0
    while time.monotonic() < ends:
        time.sleep(2)
        line += 1
        for conn in list(still_open):
            try:
                if conn.recv(1) == b"":
                    still_open.discard(conn)  # closed by the server
                    continue
            except BlockingIOError:
                pass  # open, nothing to read
            except OSError:
                still_open.discard(conn)
                continue
            try:
                conn.send(f"X-Slow-{line}: x\r\n".encode())
            except OSError:
                still_open.discard(conn)
    _, peak = memory(pid)
    for conn in conns:
        conn.close()
    time.sleep(1)
    after, _ = memory(pid)
    closed = SLOW_HEADS - len(still_open)
    return [
        f"{SLOW_HEADS:,} slow heads, {SLOW_SECONDS:.0f} s",
        f"{before:.1f}",
        f"{peak:.1f}",
        f"{after:.1f}",
        "-",
        "-",
        f"{closed:,} of {SLOW_HEADS:,} closed by the server",
    ]


def warm_up(port: int, token: str) -> None:
    """The first requests of a process pay for its start (connections, imports)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for _ in range(3):
            client.get("/healthz")
            client.get("/api/kanban")
            client.get("/api/kanban", headers={"Authorization": f"Bearer {token}"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    rows = []
    with scratch_postgres(admin_url()) as url, tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(url)
        upgrade_schema(engine)
        engine.dispose()
        for service_name, settings in SERVICES.items():
            port = free_port()
            env = service_env(
                url,
                Path(tmp),
                CRM_HTTP_PORT=str(port),
                CRM_SMTP_PORT=str(free_port()),
                **settings,
            )
            with running(crm_ingest("run"), env=env) as [service]:
                wait_port(port)
                warm_up(port, env["CRM_API_TOKEN"])
                for flood in FLOODS:
                    row = run_flood(service.pid, port, flood, env["CRM_API_TOKEN"])
                    rows.append([service_name, *row])
                rows.append([service_name, *slow_heads(service.pid, port)])
    print(f"\nmachine: {machine()}\n")
    titles = [
        "service",
        "flood",
        "RSS before (MiB)",
        "peak (MiB)",
        "after (MiB)",
        "sent (MiB)",
        "slowest /healthz (ms)",
        "answer",
    ]
    print("| " + " | ".join(titles) + " |")
    print("|---|---|" + "---:|" * 5 + "---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
