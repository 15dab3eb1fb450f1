"""Webhooks: requests/s and p99 latency with `wrk` (64 connections, 1 KB JSON bodies) on our
call-log and chat hooks (`crm-ingest api`: signature check, validation, the raw input
committed to PostgreSQL, its id sent to Redis, then 202) beside the anchor from the same
run: a bare endpoint on the same server stack (FastAPI on uvicorn, `bench/bare_api.py`)
that only answers 202.

    python -m bench.hooks [--seconds 10]

Every request carries a call or message of its own (pre-signed, so wrk does no crypto): a
stored input each time, never the dedupe path.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import (
    admin_url,
    crm_ingest,
    free_port,
    machine,
    record,
    running,
    scratch_postgres,
    service_env,
    wait_port,
)
from crm_core.db import make_engine, upgrade_schema
from ingest.signatures import sign_timestamped

CONNECTIONS = 64
LUA = """
local lines = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  local n = 0
  for line in io.lines(args[1]) do
    n = n + 1
    if n % THREADS == id - 1 then lines[#lines + 1] = line end
  end
  next_line = 0
end
function request()
  next_line = next_line % #lines + 1
  local field = "([^\t]*)\t"
  local path, stamp, signature, body = lines[next_line]:match(field:rep(3) .. "(.*)")
  return wrk.format("POST", path, {["Content-Type"] = "application/json",
    ["X-Timestamp"] = stamp, ["X-Signature"] = signature}, body)
end
"""


def bodies(kind: str, count: int, secret: str, path: str, out: Path) -> None:
    """`count` signed requests of about 1 KB, one per line: path, timestamp, signature, body."""
    stamp = str(int(time.time()))
    pad = "x" * 640
    with out.open("w") as file:
        for n in range(count):
            if kind == "calllog":
                document = {
                    "call_id": f"bench-{n}",
                    "employee": "anna@bench.example",
                    "number": f"+3361{n % 10_000_000:07d}"[:12],
                    "direction": "incoming",
                    "outcome": "missed",
                    "started_at": "2026-11-22T10:15:00+01:00",
                    "duration_seconds": 0,
                    "note": pad,
                }
            elif kind == "widget":
                document = {
                    "message_id": f"bench-{n}",
                    "visitor": {"id": f"v-{n}", "name": "Visitor", "email": f"v{n}@bench.example"},
                    "text": "Hello, is the offer still valid? " + pad,
                    "sent_at": "2026-11-22T10:15:00+01:00",
                }
            else:
                document = {"event": n, "payload": pad + "x" * 200}
            raw = json.dumps(document, separators=(",", ":")).encode()
            signature = sign_timestamped(secret, stamp, raw) if secret else "-"
            file.write(f"{path}\t{stamp}\t{signature}\t{raw.decode()}\n")


def wrk(port: int, script: Path, lines: Path, seconds: float) -> tuple[float, float]:
    """Requests per second and p99 latency in milliseconds."""
    result = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{seconds:.0f}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            str(lines),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds * 4 + 60,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    p99_text = re.search(r"99%\s+([\d.]+)(us|ms|s)", result.stdout)
    assert p99_text is not None, result.stdout
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99_text.group(2)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if non_2xx:
        print(f"  warning: {non_2xx.group(1)} answers were not 2xx", file=sys.stderr)
    return rate, float(p99_text.group(1)) * scale


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=40_000, help="pre-signed per hook")
    args = parser.parse_args(argv)
    entries: list[dict[str, object]] = []
    with scratch_postgres(admin_url()) as url, tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(url)
        upgrade_schema(engine)
        engine.dispose()
        ours, bare = free_port(), free_port()
        env = service_env(url, Path(tmp), CRM_HTTP_PORT=str(ours))
        script = Path(tmp) / "hook.lua"
        script.write_text(LUA.replace("THREADS", "2"))
        with running(
            crm_ingest("api"), [sys.executable, "-m", "bench.bare_api", str(bare)], env=env
        ):
            wait_port(ours)
            wait_port(bare)
            api = httpx.Client(
                base_url=f"http://127.0.0.1:{ours}",
                headers={"Authorization": "Bearer bench-token"},
                timeout=30,
            )
            api.post("/api/users", json={"email": "anna@bench.example", "name": "Anna"})
            hooks = {}
            for kind in ("calllog", "widget"):
                source = api.post("/api/sources", json={"kind": kind, "name": kind}).json()
                lines = Path(tmp) / f"{kind}.txt"
                route = "calllog" if kind == "calllog" else "chat"
                path = f"/hooks/{route}/{source['id']}"
                bodies(kind, args.requests, source["secret"], path, lines)
                hooks[kind] = lines
            bare_lines = Path(tmp) / "bare.txt"
            bodies("bare", 1000, "", "/bare", bare_lines)
            print(f"machine: {machine()}")
            anchor_rate, anchor_p99 = wrk(bare, script, bare_lines, args.seconds)
            print(f"bare 202 endpoint   {anchor_rate:9.0f} req/s   p99 {anchor_p99:7.1f} ms")
            for kind, lines in hooks.items():
                rate, p99 = wrk(ours, script, lines, args.seconds)
                print(
                    f"{kind + ' hook':<19} {rate:9.0f} req/s   p99 {p99:7.1f} ms   "
                    f"ratio {rate / anchor_rate:.2f}"
                )
                entries.append(
                    {
                        "name": f"webhook_{kind}_requests_per_second",
                        "value": round(rate, 1),
                        "unit": "req/s",
                        "anchor": "bare FastAPI/uvicorn endpoint answering 202",
                        "anchor_value": round(anchor_rate, 1),
                        "ratio": round(rate / anchor_rate, 3),
                    }
                )
                entries.append(
                    {
                        "name": f"webhook_{kind}_p99",
                        "value": round(p99, 2),
                        "unit": "ms",
                        "anchor": "bare FastAPI/uvicorn endpoint answering 202",
                        "anchor_value": round(anchor_p99, 2),
                        "ratio": round(p99 / anchor_p99, 3),
                    }
                )
            api.close()
    record(entries)
    return entries


if __name__ == "__main__":
    main()
