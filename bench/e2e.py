"""End to end: mail accepted over SMTP -> in the card's history with counters and focus
done, on PostgreSQL + Redis, with 1 and with 2 `crm-ingest worker` processes.

    python -m bench.e2e [--messages 3000] [--seconds 10]

The mail goes to 20 cards of 10 users (one card would serialise every event on its row
lock, as it must). For each worker count: the maximum rate (a burst from Postfix's
`smtp-source`, 10 processes of 2 sessions, one card each; sustained rate = messages /
(last processed - first received)), then a paced load at 50% and 90% of that rate (our own
paced sender, 10 SMTP sessions, cards in turn), with p50/p99 of each mail's
latency from the moment the SMTP door stored it to the moment its history entry was
committed (both times from the database). Anchor, same run, same Redis: the drain rate of a
Dramatiq actor that does nothing, through the same kind of broker (without our attempt
bookkeeping), actors and worker threads.
"""

from __future__ import annotations

import argparse
import smtplib
import subprocess
import tempfile
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.common import (
    admin_url,
    crm_ingest,
    free_port,
    machine,
    percentile,
    record,
    redis_url,
    running,
    scratch_postgres,
    service_env,
    wait_port,
)
from bench.smtp import SENDER, world
from crm_core.db import make_engine, make_session_factory
from ingest.pipeline import build_broker, declare_actors

THREADS = 4  # CRM_WORKER_THREADS of each worker process


def noop_drain_rate(url: str, messages: int) -> float:
    """Messages/s a Dramatiq worker (THREADS threads) drains through a no-op actor, on a
    broker without AttemptBookkeeping (no database write per attempt): Dramatiq's own cost."""
    broker = build_broker(url, namespace=f"bench-noop-{time.monotonic_ns()}")
    done = threading.Event()
    seen = [0]
    lock = threading.Lock()

    def noop(_sessions: Any, _item: int) -> None:
        with lock:
            seen[0] += 1
            if seen[0] == messages:
                done.set()

    pipeline = declare_actors(
        broker, make_session_factory(make_engine("sqlite://")), 3, {"noop": noop}
    )
    for n in range(messages):
        pipeline.enqueue("noop", n)
    started = time.perf_counter()
    worker = pipeline.start_worker(THREADS)
    done.wait(timeout=600)
    elapsed = time.perf_counter() - started
    worker.stop()
    broker.close()
    return messages / elapsed


def finished(url: str) -> list[tuple[float, float]]:
    """(received, finished) epoch seconds of every processed item."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT extract(epoch FROM received_at), extract(epoch FROM finished_at)"
                " FROM inbound_items WHERE status = 'processed'"
            )
        ).all()
    engine.dispose()
    return [(float(a), float(b)) for a, b in rows]


def wait_processed(url: str, count: int, timeout: float = 900) -> list[tuple[float, float]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = finished(url)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def mail(address: str, n: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"Anna <{SENDER}>"
    message["To"] = address
    message["Subject"] = f"Paced {n}"
    message["Message-ID"] = f"<paced-{n}-{time.time_ns()}@bench.example>"
    message.set_content("Hello, this is a paced message of about five kilobytes.\n" * 90)
    return message.as_bytes(policy=SMTP)  # CRLF line ends, as on the wire


def paced(port: int, addresses: list[str], rate: float, seconds: float, sessions: int = 10) -> int:
    """Send at `rate` messages/s for `seconds` over `sessions` SMTP sessions; how many."""
    total = int(rate * seconds)
    sent = [0]
    lock = threading.Lock()
    start = time.perf_counter()

    def session(index: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for n in range(index, total, sessions):
                due = start + n / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                address = addresses[n % len(addresses)]
                client.sendmail(SENDER, [address], mail(address, n))
                with lock:
                    sent[0] += 1

    threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent[0]


def latencies(rows: list[tuple[float, float]]) -> tuple[float, float]:
    values = [(done - received) * 1000 for received, done in rows]
    return percentile(values, 50), percentile(values, 99)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    entries: list[dict[str, object]] = []
    print(f"machine: {machine()}")
    anchor = noop_drain_rate(redis_url(), args.messages * 3)
    print(f"dramatiq no-op actor drain: {anchor:8.0f} msg/s   (anchor)")
    for workers in (1, 2):
        with scratch_postgres(admin_url()) as url, tempfile.TemporaryDirectory() as tmp:
            addresses = world(url, cards=20)
            port = free_port()
            env = service_env(
                url, Path(tmp), CRM_SMTP_PORT=str(port), CRM_WORKER_THREADS=str(THREADS)
            )
            commands = [crm_ingest("smtp"), crm_ingest("sweeper")]
            commands += [crm_ingest("worker") for _ in range(workers)]
            with running(*commands, env=env):
                wait_port(port)
                per_card = args.messages // 10
                blasts = [
                    subprocess.Popen(
                        [
                            "smtp-source",
                            "-s",
                            "2",
                            "-m",
                            str(per_card),
                            "-l",
                            "5120",
                            "-f",
                            SENDER,
                            "-t",
                            addresses[n],
                            f"127.0.0.1:{port}",
                        ],
                        stdout=subprocess.DEVNULL,
                    )
                    for n in range(10)
                ]
                for blast in blasts:
                    assert blast.wait(timeout=900) == 0
                rows = wait_processed(url, per_card * 10)
                first = min(r for r, _ in rows)
                last = max(d for _, d in rows)
                accepted_span = max(r for r, _ in rows) - first
                maximum = len(rows) / (last - first)
                acceptance = len(rows) / accepted_span if accepted_span else float("inf")
                p50, p99 = latencies(rows)
                print(
                    f"{workers} worker(s): burst of {len(rows)}: accepted at {acceptance:6.0f} "
                    f"msg/s, processed end to end at {maximum:6.0f} msg/s "
                    f"(ratio {maximum / acceptance:.2f}), p50 {p50:.0f} ms, p99 {p99:.0f} ms"
                )
                entries += [
                    {
                        "name": f"e2e_{workers}_worker_sustained_rate",
                        "value": round(maximum, 1),
                        "unit": "msg/s",
                        "anchor": "SMTP acceptance rate of the same burst",
                        "anchor_value": round(acceptance, 1),
                        "ratio": round(maximum / acceptance, 3),
                    },
                    {
                        "name": f"e2e_{workers}_worker_vs_dramatiq_noop",
                        "value": round(maximum, 1),
                        "unit": "msg/s",
                        "anchor": "dramatiq no-op actor drain rate (same Redis)",
                        "anchor_value": round(anchor, 1),
                        "ratio": round(maximum / anchor, 3),
                    },
                ]
                for share in (0.5, 0.9):
                    before = len(finished(url))
                    count = paced(port, addresses, maximum * share, args.seconds)
                    rows = wait_processed(url, before + count)
                    ordered = sorted(rows, key=lambda r: r[0])[before:]
                    p50, p99 = latencies(ordered)
                    print(
                        f"   at {share:.0%} ({maximum * share:5.0f} msg/s, {count} mails): "
                        f"p50 {p50:6.0f} ms   p99 {p99:6.0f} ms"
                    )
                    entries.append(
                        {
                            "name": f"e2e_{workers}_worker_p99_at_{int(share * 100)}pct",
                            "value": round(p99, 1),
                            "unit": "ms",
                            "anchor": "target: 1000 ms at 50%",
                            "anchor_value": 1000.0,
                            "ratio": round(p99 / 1000.0, 3),
                            "p50_ms": round(p50, 1),
                        }
                    )
    record(entries)
    return entries


if __name__ == "__main__":
    main()
