"""Shared helpers of the benchmarks: percentiles, a scratch PostgreSQL database, results."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

RESULTS = Path(__file__).resolve().parent / "results.json"


def timed(action: Callable[[], Any], samples: int) -> list[float]:
    """Wall-clock milliseconds of `samples` calls (after a few warm-up calls)."""
    for _ in range(min(20, samples)):
        action()
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        action()
        out.append((time.perf_counter() - start) * 1000)
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
    }


@contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A new empty database for the run, dropped afterwards."""
    admin = make_url(admin_url).set(drivername="postgresql+psycopg")
    name = f"crm_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def machine() -> dict[str, Any]:
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_mib": memory, "python": platform.python_version()}


def record(entries: list[dict[str, Any]]) -> None:
    """Merge `entries` ({name, value, unit, anchor, anchor_value, ratio}) into results.json."""
    existing: list[dict[str, Any]] = []
    if RESULTS.exists():
        existing = json.loads(RESULTS.read_text())
    names = {e["name"] for e in entries}
    merged = [e for e in existing if e["name"] not in names] + entries
    RESULTS.write_text(json.dumps(merged, indent=2) + "\n")


# --- processes of the service under test ----------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


def redis_url() -> str:
    return os.environ.get("CRM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def service_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of `crm-ingest` processes under test: the scratch database, the
    machine's Redis (CRM_BENCH_REDIS_URL) under a namespace of this run's own."""
    return {
        **os.environ,
        "CRM_DATABASE_URL": database_url,
        "CRM_BROKER_URL": redis_url(),
        "CRM_BROKER_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
        "CRM_DATA_DIR": str(data_dir),
        "CRM_ARCHIVE_DOMAIN": "archive.bench",
        "CRM_API_TOKEN": "bench-token",
        "CRM_LOG_LEVEL": "WARNING",
        # Thousands of mails from one sender to one card: the loop limit would hold them.
        "CRM_LOOP_LIMIT_COUNT": str(10**9),
        # No sender checks: they ask the senders' DNS, which a bench machine may not reach
        # (each lookup would wait CRM_DNS_TIMEOUT_SECONDS); the bench measures our pipeline.
        "CRM_SMTP_VERIFY_SENDERS": "false",
        **extra,
    }


@contextmanager
def running(*commands: list[str], env: dict[str, str]) -> Iterator[list[Any]]:
    """Start processes (argv lists), stop them (SIGTERM, then SIGKILL) on the way out."""
    started = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)  # errors show on stderr
        for argv in commands
    ]
    try:
        yield started
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def crm_ingest(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest.cli", *args]


def admin_url() -> str:
    return os.environ.get("CRM_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
