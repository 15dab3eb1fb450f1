"""The fault suite's system under test: the deployment, its load and what it accepted, the
damage done to it (kills, restarts, outages) and each recovery measured against its bound."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from crm_core import counters
from crm_core.company import COUNTER_MODES
from crm_core.db import read_only
from crm_core.models import HistoryEntry, InboundItem, InboundStatus, User, utcnow
from tests.faults.load import CHANNELS, Load, Record, Refusal
from tests.faults.servers import Deployment, PostgresCluster, RedisServer
from tests.support.helpers import wait_for

SWEEP_AFTER = 3.0
SWEEP_INTERVAL = 1.0
WORKERS = 2
BROKER_DOWN = float(os.environ.get("CRM_FAULT_BROKER_DOWN_SECONDS", "60"))
SEED = int(os.environ.get("CRM_FAULT_SEED", str(random.SystemRandom().randrange(10**6))))
# Each recovery must come within this multiple of its bound: a timeout, not a speed test.
GENEROUS = 5


@dataclass(frozen=True)
class Hit:
    at: float
    waiting: int  # inputs stored and not yet processed when the damage was done
    resent: int  # System.resent() then


@dataclass(frozen=True)
class Recovery:
    seconds: float
    resent: int  # inputs sent again since the hit
    refused: list[Refusal]  # what the senders were refused from the hit to the recovery


@dataclass
class System:
    pg: PostgresCluster
    redis: RedisServer
    deployment: Deployment
    sessions: sessionmaker[Session]
    load: Load
    # Measured once without faults: workers starting on a backlog, then draining it.
    worker_start_seconds: float = 0.0
    seconds_per_input: float = 0.0
    faults: list[dict[str, Any]] = field(default_factory=list)
    last_check: dict[str, Any] = field(default_factory=dict)

    @property
    def record(self) -> Record:
        return self.load.record

    def waiting(self) -> int:
        """Inputs stored and not finished (`received`)."""
        with read_only(self.sessions) as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(InboundItem)
                    .where(InboundItem.status == InboundStatus.RECEIVED.value)
                )
                or 0
            )

    def in_history(self) -> dict[str, Counter[str]]:
        """Each channel's identifiers (subject, call id, message id) as often as in history."""
        found: dict[str, Counter[str]] = {channel: Counter() for channel in CHANNELS}
        data = HistoryEntry.data
        with read_only(self.sessions) as session:
            rows = session.execute(
                select(
                    HistoryEntry.type,
                    data["subject"].as_string(),
                    data["call_id"].as_string(),
                    data["message_id"].as_string(),
                ).where(HistoryEntry.type.in_(CHANNELS))
            ).all()
        for kind, subject, call_id, message_id in rows:
            ident = {"email": subject, "call": call_id, "chat": message_id}[kind]
            found[kind][ident] += 1
        return found

    def all_in_history(self, wanted: dict[str, set[str]]) -> bool:
        found = self.in_history()
        return all(wanted[channel] <= found[channel].keys() for channel in CHANNELS)

    def resent(self) -> int:
        """The sweeper's sends of waiting inputs so far (InboundItem.resends, counted when the
        broker took them): the evidence that the sweeper did the recovering."""
        with read_only(self.sessions) as session:
            return int(session.scalar(select(func.coalesce(func.sum(InboundItem.resends), 0))) or 0)

    def bound(self, backlog: int, arrivals: float) -> float:
        """What the sweeper promises after a fault: an input lost with the broker or a dead
        worker is sent again within sweep_after + sweep_interval of its last enqueue; then
        workers start (when they were restarted) and work through the backlog at the
        measured rate, less the share the steady load (`arrivals` per second) takes."""
        busy = min(arrivals * self.seconds_per_input, 0.9)
        return (
            SWEEP_AFTER
            + SWEEP_INTERVAL
            + self.worker_start_seconds
            + backlog * self.seconds_per_input / (1 - busy)
        )

    def hit(self) -> Hit:
        """The state just before damage is done."""
        return Hit(time.monotonic(), self.waiting(), self.resent())

    def recover(self, fault: str, hit: Hit, ended: float, at_most: float | None = None) -> Recovery:
        """Wait until every input accepted before `ended` (the fault's end) is in history, at
        most GENEROUS times the bound (or `at_most`); record the recovery time, the bound,
        and what the senders were told meanwhile."""
        accepted = self.record.accepted_before(ended)
        backlog, arrivals = self.waiting(), len(CHANNELS) / self.load.pace
        bound = self.bound(backlog, arrivals)
        timeout = min(GENEROUS * bound, at_most or GENEROUS * bound)
        wait_for(
            lambda: self.all_in_history(accepted),
            timeout=timeout,
            what=f"recovery after {fault} (bound {bound:.1f} s; waited {timeout:.0f} s)",
        )
        recovery = time.monotonic() - ended
        resent = self.resent() - hit.resent
        refused = self.record.refused_between(hit.at, time.monotonic())
        self.faults.append(
            {
                "fault": fault,
                "waiting_when_hit": hit.waiting,
                "recovery_seconds": round(recovery, 2),
                "bound_seconds": round(bound, 2),
                "waiting_at_fault_end": backlog,
                "arrivals_per_second": round(arrivals, 1),
                "resent": resent,
                "accepted_before_fault_end": sum(len(ids) for ids in accepted.values()),
                "refused_attempts": len(refused),
            }
        )
        print(
            f"\n{fault}: recovered {recovery:.1f} s after the fault's end "
            f"(bound {bound:.1f} s: sweep_after {SWEEP_AFTER} + interval {SWEEP_INTERVAL} "
            f"+ worker start {self.worker_start_seconds:.1f} + {backlog} waiting x "
            f"{self.seconds_per_input:.3f} s at {arrivals:.0f} arrivals/s); "
            f"{resent} re-sent; {hit.waiting} waiting when hit; {len(refused)} refused attempts"
        )
        return Recovery(recovery, resent, refused)

    def check(self) -> None:
        """Every accepted input once in history, one stored item each, all processed, and
        counters equal to a recount."""
        accepted = self.record.accepted_before(time.monotonic())
        wait_for(
            lambda: self.all_in_history(accepted) and self.waiting() == 0,
            timeout=GENEROUS * self.bound(self.waiting(), 0),
            what="every accepted input processed",
        )
        found = self.in_history()
        with read_only(self.sessions) as session:
            stored = dict(
                session.execute(
                    select(InboundItem.channel, func.count()).group_by(InboundItem.channel)
                ).all()
            )
            unfinished = Counter(
                session.scalars(
                    select(InboundItem.status).where(
                        InboundItem.status != InboundStatus.PROCESSED.value
                    )
                )
            )
        report: dict[str, Any] = {}
        for channel in CHANNELS:
            ids = set(self.record.accepted[channel])
            abandoned = self.record.abandoned[channel]
            seen = found[channel]
            report[channel] = {
                "accepted": len(ids),
                "found_in_history": len(ids & seen.keys()),
                "missing": sorted(ids - seen.keys()),
                "duplicates": {i: n for i, n in seen.items() if n > 1},
                "never_sent": sorted(seen.keys() - ids - abandoned),
                "stored_items": stored.get(channel, 0),
                "history_entries": sum(seen.values()),
                "abandoned_while_refused": len(abandoned),
            }
        report["stuck"] = dict(unfinished)
        self.last_check = report
        for channel in CHANNELS:
            got = report[channel]
            assert got["missing"] == [], f"{channel}: accepted, not in history"
            assert got["duplicates"] == {}, f"{channel}: in history more than once"
            assert got["never_sent"] == [], f"{channel}: in history, never sent"
            # One stored item per input, and each item made exactly one history entry
            assert got["stored_items"] == got["history_entries"], channel
        assert unfinished == Counter(), "inputs not processed (received, failed, unmatched...)"
        with read_only(self.sessions) as session:
            for user in session.scalars(select(User)):
                for mode in COUNTER_MODES:
                    now = utcnow()
                    assert counters.read_counters(session, user.id, now, mode) == (
                        counters.recount(session, user, mode, now)
                    ), (user.email, mode)

    def summary(self) -> dict[str, Any]:
        return {
            "seed": SEED,
            "settings": {
                "CRM_SWEEP_AFTER_SECONDS": SWEEP_AFTER,
                "CRM_SWEEP_INTERVAL_SECONDS": SWEEP_INTERVAL,
                "workers": WORKERS,
                "CRM_WORKER_THREADS": 2,
                "CRM_FAULT_BROKER_DOWN_SECONDS": BROKER_DOWN,
            },
            "bound": "sweep_after + sweep_interval + worker start + waiting x seconds per input",
            "measured_worker_start_seconds": round(self.worker_start_seconds, 2),
            "measured_seconds_per_input": round(self.seconds_per_input, 4),
            "pace_seconds_per_channel": round(self.load.pace, 3),
            # Deliveries of an input already finished (re-sent by the sweeper while queued,
            # or redelivered by Dramatiq): the claim turned each into a no-op.
            "redundant_deliveries": self.deployment.log_lines("worker", "already processed"),
            "logs": str(self.deployment.logs),
            "channels": {c: self.last_check.get(c) for c in CHANNELS},
            "stuck": self.last_check.get("stuck"),
            "faults": self.faults,
        }
