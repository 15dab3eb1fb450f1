"""Shared helpers of the benchmarks: percentiles, a scratch PostgreSQL database, results."""

from __future__ import annotations

import json
import os
import platform
import statistics
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
