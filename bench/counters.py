"""Reads at scale: one user's counters and a Kanban top 50 over 1,000,000 activities.

    python -m bench.counters [--activities 1000000] [--users 1000] [--samples 2000]

Builds the data in a scratch PostgreSQL database (CRM_BENCH_PG_URL, default the local
server), then prints p50/p99 of `user_cases.user_counters` and `card_cases.kanban` (what the API
calls) beside the anchor: a from-scratch recount query over all activities, on the same data
in the same run. Targets (issue 3): counters p99 < 2 ms, Kanban top-50 p99 < 10 ms.
Each read is measured twice: as the API does it (a session per request: pool checkout with
its liveness ping, then the statements) and on one held connection (the statements alone).
Counters are served from each user's snapshot while it holds (see crm_core/counters.py), so
they are measured cold too: every snapshot invalidated, each user read once (the recount
and the snapshot write). Warm reads use the real clock, so snapshots also expire as in use.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, datetime

from sqlalchemy import text

from bench.common import machine, record, scratch_postgres, summary, timed
from crm_core import card_cases, user_cases
from crm_core.db import make_engine, make_session_factory, read_only, upgrade_schema

STAGES = 10


def build(engine_url: str, users: int, cards: int, activities: int) -> float:
    """Bulk-load with server-side generate_series; returns the seconds it took."""
    engine = make_engine(engine_url)
    upgrade_schema(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, email, name, timezone, planned_lead_minutes, manager_id,"
                " created_at) SELECT g, 'user' || g || '@bench.example', 'User ' || g,"
                " 'Europe/Paris', 15, CASE WHEN g % 10 = 1 THEN NULL ELSE g - (g - 1) % 10 END,"
                " now() FROM generate_series(1, :n) g"
            ),
            {"n": users},
        )
        conn.execute(
            text(
                "INSERT INTO cards (id, title, entity_type, stage, responsible_id, created_at,"
                " focus_at, focus_rank, focus_reason) SELECT g, 'Deal ' || g, 'deal',"
                " 'stage' || (g % :stages), 1 + (g * 7919) % :users, now(), f,"
                " (extract(epoch FROM f) * 1000000)::bigint, 'incoming e-mail'"
                " FROM (SELECT g, now() - (random() * interval '60 days') AS f"
                "       FROM generate_series(1, :n) g) s"
            ),
            {"n": cards, "users": users, "stages": STAGES},
        )
        conn.execute(
            text(
                "INSERT INTO activities (card_id, type, incoming, is_open, status,"
                " responsible_id, card_responsible_id, deadline, subject, description,"
                " created_at) SELECT c.id, 'call', a.incoming, a.open, 'scheduled',"
                " a.responsible, c.responsible_id, CASE WHEN a.incoming THEN NULL ELSE"
                " now() + (random() * 60 - 30) * interval '1 day' END, 'Call', '', now()"
                " FROM (SELECT 1 + (random() * (:cards - 1))::int AS card,"
                "       1 + (random() * (:users - 1))::int AS responsible,"
                "       random() < 0.1 AS incoming, random() < 0.3 AS open"
                "       FROM generate_series(1, :n)) a JOIN cards c ON c.id = a.card"
            ),
            {"n": activities, "cards": cards, "users": users},
        )
        conn.execute(
            text(
                "INSERT INTO user_counters (user_id, incoming, incoming_items) SELECT u.id,"
                " (SELECT count(*) FROM activities a WHERE a.responsible_id = u.id"
                "  AND a.is_open AND a.incoming),"
                " (SELECT count(*) FROM activities a WHERE a.card_responsible_id = u.id"
                "  AND a.is_open AND a.incoming) FROM users u"
            )
        )
        for table in ("users", "cards", "activities"):
            conn.execute(
                text(  # table names from the fixed tuple above
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608
                    f" (SELECT max(id) FROM {table}))"
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


RECOUNT = text(
    "SELECT a.responsible_id, count(*) FILTER (WHERE a.incoming),"
    " count(*) FILTER (WHERE a.deadline <= :soon),"
    " count(*) FILTER (WHERE a.deadline BETWEEN :midnight AND :now)"
    " FROM activities a WHERE a.is_open AND a.responsible_id = :user GROUP BY 1"
)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--activities", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=2_000)
    args = parser.parse_args(argv)
    admin = os.environ.get("CRM_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    with scratch_postgres(admin) as url:
        seconds = build(url, args.users, args.cards, args.activities)
        print(
            f"built {args.activities:,} activities, {args.cards:,} cards, {args.users:,} users"
            f" in {seconds:.1f} s"
        )
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        rng = random.Random(7)
        now = datetime.now(UTC)

        def counters() -> None:
            with read_only(sessions) as session:
                user_cases.user_counters(session, rng.randint(1, args.users), datetime.now(UTC))

        def counters_cold() -> list[float]:
            out = []
            for user in rng.sample(range(1, args.users + 1), args.users):
                start = time.perf_counter()
                with read_only(sessions) as session:
                    user_cases.user_counters(session, user, datetime.now(UTC))
                out.append((time.perf_counter() - start) * 1000)
            return out

        def kanban() -> None:
            with read_only(sessions) as session:
                card_cases.kanban(session, "deal", f"stage{rng.randrange(STAGES)}", 50)

        held = sessions()  # one session kept open: no pool checkout, ping or session setup
        held.connection(execution_options={"isolation_level": "AUTOCOMMIT"})

        def counters_held() -> None:
            user_cases.user_counters(held, rng.randint(1, args.users), datetime.now(UTC))

        def kanban_held() -> None:
            card_cases.kanban(held, "deal", f"stage{rng.randrange(STAGES)}", 50)

        def recount() -> None:
            # The anchor: one user's counters recounted from the activities, no help from
            # maintained rows; PostgreSQL still uses the best index it has.
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            with engine.connect() as conn:
                conn.execute(
                    RECOUNT,
                    {
                        "user": rng.randint(1, args.users),
                        "soon": now,
                        "now": now,
                        "midnight": midnight,
                    },
                ).all()

        def full_scan() -> None:
            # A second anchor: counting every user's incoming from scratch (a full scan).
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT responsible_id, count(*) FROM activities WHERE is_open"
                        " AND incoming GROUP BY 1"
                    )
                ).all()

        with engine.begin() as conn:  # every snapshot stale: the next read of each recounts
            conn.execute(text("UPDATE user_counters SET version = version + 1"))
        cold = counters_cold()
        warm_from = datetime.now(UTC)
        figures = {
            "counters_cold": summary(cold),
            "counters": summary(timed(counters, args.samples)),
            "counters_held_connection": summary(timed(counters_held, args.samples)),
            "kanban_top50": summary(timed(kanban, args.samples)),
            "kanban_top50_held_connection": summary(timed(kanban_held, args.samples)),
            "recount_one_user_sql": summary(timed(recount, args.samples)),
            "recount_all_users_scan": summary(timed(full_scan, max(10, args.samples // 100))),
        }
        with engine.connect() as conn:
            renewed = conn.execute(
                text("SELECT count(*) FROM user_counters WHERE snap_from >= :t"), {"t": warm_from}
            ).scalar_one()
        held.close()
        engine.dispose()
    print(f"snapshots renewed while measuring warm reads: {renewed} of {args.users} users")
    print(f"machine: {machine()}  date: {datetime.now(UTC):%Y-%m-%d}")
    print(f"{'read':<32}{'p50 ms':>10}{'p99 ms':>10}")
    for name, f in figures.items():
        print(f"{name:<32}{f['p50']:>10.3f}{f['p99']:>10.3f}")
    anchor = figures["recount_all_users_scan"]["p50"]
    entries = []
    for name, target in (
        ("counters_cold", 2.0),
        ("counters", 2.0),
        ("counters_held_connection", 2.0),
        ("kanban_top50", 10.0),
        ("kanban_top50_held_connection", 10.0),
    ):
        p99 = figures[name]["p99"]
        verdict = "met" if p99 < target else "MISSED"
        print(
            f"{name}: p99 {p99:.3f} ms (target < {target} ms: {verdict});"
            f" full recount scan p50 {anchor:.1f} ms = {anchor / p99:.0f}x the p99"
        )
        entries.append(
            {
                "name": f"{name}_p99_at_{args.activities}_activities",
                "value": round(p99, 3),
                "unit": "ms",
                "anchor": "recount_all_users_scan_p50",
                "anchor_value": round(anchor, 3),
                "ratio": round(p99 / anchor, 5),
            }
        )
    record(entries)
    return figures


def record_scaling(found: dict[str, dict[str, dict[str, float]]]) -> None:
    """The p99 at the larger size over the p99 at the smaller (target: under 1.5)."""
    (small, low), (large, high) = sorted(found.items(), key=lambda kv: int(kv[0]))
    entries = []
    for name in ("counters", "kanban_top50"):
        ratio = high[name]["p99"] / low[name]["p99"]
        print(f"{name}: p99 at {int(large):,} / p99 at {int(small):,} activities = {ratio:.2f}")
        entries.append(
            {
                "name": f"{name}_p99_scaling_{large}_vs_{small}",
                "value": round(high[name]["p99"], 3),
                "unit": "ms",
                "anchor": f"p99 at {int(small):,} activities",
                "anchor_value": round(low[name]["p99"], 3),
                "ratio": round(ratio, 3),
            }
        )
    record(entries)


if __name__ == "__main__":
    main()
