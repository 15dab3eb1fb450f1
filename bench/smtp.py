"""SMTP acceptance: messages/s through 20 parallel sessions of Postfix's `smtp-source`,
5 KB and 100 KB messages, for our listener (`crm-ingest smtp`: RCPT lookup, the raw message
committed to PostgreSQL, its id sent to Redis, then 250) beside two anchors from the same
run: an aiosmtpd server on the same protocol settings whose handlers only answer 250 (the
Python floor, `bench/noop_smtp.py`) and Postfix's `smtp-sink` (the C ceiling).

    python -m bench.smtp [--messages 4000] [--rounds 2]

Each server takes the same load `--rounds` times, interleaved; the best round counts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

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
from crm_core import card_cases, user_cases
from crm_core.db import make_engine, make_session_factory, unit_of_work, upgrade_schema
from crm_core.models import InboundItem, utcnow
from ingest.mailbox.addresses import encode_archive_address, hash_archive_token, new_archive_token

SENDER = "anna@bench.example"
SIZES = {"5KB": 5 * 1024, "100KB": 100 * 1024}


def world(url: str, cards: int = 1) -> list[str]:
    """A sending user (an administrator, so they may archive to any card), `cards` cards of
    ten other users, each with an archive address; returns the addresses."""
    engine = make_engine(url)
    upgrade_schema(engine)
    addresses = []
    with unit_of_work(make_session_factory(engine)) as session:
        sender = user_cases.create_user(session, SENDER, "Anna Bench")
        sender.is_admin = True
        owners = [
            user_cases.create_user(session, f"owner{n}@bench.example", f"Owner {n}")
            for n in range(10)
        ]
        for n in range(cards):
            card = card_cases.create_card(
                session,
                title=f"Bench deal {n}",
                entity_type="deal",
                stage="new",
                responsible_id=owners[n % len(owners)].id,
                contact_emails=[],
                contact_phones=[],
                default_region="FR",
            )
            token = new_archive_token()
            card_cases.issue_archive_address(
                session, card.id, hash_archive_token(token), timedelta(0), utcnow()
            )
            addresses.append(encode_archive_address(token, "archive.bench"))
    engine.dispose()
    return addresses


def blast(port: int, address: str, size: int, messages: int) -> float:
    """smtp-source with 20 sessions; messages per second."""
    started = time.perf_counter()
    subprocess.run(
        [
            "smtp-source",
            "-s",
            "20",
            "-m",
            str(messages),
            "-l",
            str(size),
            "-f",
            SENDER,
            "-t",
            address,
            f"127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return messages / (time.perf_counter() - started)


def stored(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        found = conn.execute(select(func.count()).select_from(InboundItem)).scalar_one()
    engine.dispose()
    return int(found)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=4000, help="per 5 KB round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    entries: list[dict[str, object]] = []
    with scratch_postgres(admin_url()) as url, tempfile.TemporaryDirectory() as tmp:
        [address] = world(url)
        ours, noop, sink = free_port(), free_port(), free_port()
        env = service_env(url, Path(tmp), CRM_SMTP_PORT=str(ours))
        with running(
            crm_ingest("smtp"),
            [sys.executable, "-m", "bench.noop_smtp", str(noop)],
            ["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink}", "1000"],
            env=env,
        ):
            for port in (ours, noop, sink):
                wait_port(port)
            print(f"machine: {machine()}")
            for label, size in SIZES.items():
                count = args.messages if size < 50_000 else max(200, args.messages // 4)
                best = {"ours": 0.0, "noop": 0.0, "sink": 0.0}
                before = stored(url)
                for _ in range(args.rounds):
                    for name, port in (("ours", ours), ("noop", noop), ("sink", sink)):
                        best[name] = max(best[name], blast(port, address, size, count))
                kept = stored(url) - before
                print(
                    f"{label:>6}: ours {best['ours']:8.0f} msg/s   aiosmtpd no-op "
                    f"{best['noop']:8.0f}   smtp-sink {best['sink']:8.0f}   "
                    f"ours/no-op {best['ours'] / best['noop']:.2f}   "
                    f"ours/smtp-sink {best['ours'] / best['sink']:.2f}   "
                    f"(stored {kept} of {count * args.rounds})"
                )
                anchors = (
                    ("noop", "aiosmtpd no-op server", best["noop"]),
                    ("smtp_sink", "postfix smtp-sink", best["sink"]),
                )
                for short, anchor, value in anchors:
                    entries.append(
                        {
                            "name": f"smtp_acceptance_{label}_vs_{short}",
                            "value": round(best["ours"], 1),
                            "unit": "msg/s",
                            "anchor": anchor,
                            "anchor_value": round(value, 1),
                            "ratio": round(best["ours"] / value, 3),
                        }
                    )
    record(entries)
    return entries


if __name__ == "__main__":
    main()
