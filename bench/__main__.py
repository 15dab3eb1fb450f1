"""Every benchmark in one run, each beside its anchor from the same run:

    python -m bench [--quick] [--only smtp,hooks,e2e,reads,parse]

Installs what it needs when missing (Debian's `postfix` for `smtp-source` and `smtp-sink`,
and `wrk`; apt-get, so as root), runs each benchmark on the machine's PostgreSQL and Redis
(CRM_BENCH_PG_URL, CRM_BENCH_REDIS_URL), writes `bench/results.json` (a list of
{name, value, unit, anchor, anchor_value, ratio}) and `BENCHMARKS.md` (the table, the
command, the machine and the date), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import counters, e2e, hooks, parse, smtp
from bench.common import RESULTS, machine

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {"smtp-source": "postfix", "smtp-sink": "postfix", "wrk": "wrk"}


def install_tools() -> None:
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    print(f"installing {', '.join(missing)} (Debian packages)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *missing]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)


def table(entries: list[dict[str, Any]]) -> str:
    lines = [
        "| benchmark | value | anchor (same run) | anchor value | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for e in entries:
        lines.append(
            f"| {e['name']} | {e['value']:,} {e['unit']} | {e['anchor']} | "
            f"{e['anchor_value']:,} | {e['ratio']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller loads (a smoke run)")
    parser.add_argument("--only", default="smtp,hooks,e2e,reads,parse")
    args = parser.parse_args()
    wanted = args.only.split(",")
    install_tools()
    RESULTS.unlink(missing_ok=True)
    started = time.perf_counter()
    q = args.quick
    if "parse" in wanted:
        parse.main(["--seconds", "2" if q else "5"])
    if "smtp" in wanted:
        smtp.main(["--messages", "1000" if q else "4000", "--rounds", "1" if q else "2"])
    if "hooks" in wanted:
        hooks.main(["--seconds", "4" if q else "10", "--requests", "8000" if q else "40000"])
    if "e2e" in wanted:
        e2e.main(["--messages", "400" if q else "3000", "--seconds", "4" if q else "10"])
    if "reads" in wanted:
        sizes = ["100000", "1000000"] if q else ["1000000", "10000000"]
        found = {
            size: counters.main(["--activities", size, "--samples", "500" if q else "2000"])
            for size in sizes
        }
        counters.record_scaling(found)
    entries = json.loads(RESULTS.read_text())
    command = (
        "python -m bench"
        + (" --quick" if q else "")
        + (f" --only {args.only}" if args.only != parser.get_default("only") else "")
    )
    info = machine()
    report = (
        "# Benchmarks\n\n"
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{info['cores']} cores, {info['memory_mib']:,} MiB, Python {info['python']}, "
        f"in {time.perf_counter() - started:.0f} s. Every figure is beside an anchor "
        "measured in the same run on the same machine (these machines are shared and "
        "noisy: compare ratios, not raw figures, between runs). What each benchmark does is "
        "in its module's docstring (`bench/*.py`); `bench/results.json` holds the same.\n\n"
        + table(entries)
        + "\n"
    )
    # The standalone benches (bench/http_memory.py, bench/smtp_memory.py) keep their own
    # sections below the table: everything from the first "## " heading on is kept.
    path = ROOT / "BENCHMARKS.md"
    old = path.read_text() if path.exists() else ""
    path.write_text(report + (old[old.find("\n## ") :] if "\n## " in old else ""))
    print()
    print(table(entries))


if __name__ == "__main__":
    main()
