"""Counter snapshots: a read served from a user's snapshot is still exactly a recount.

Each change that can move someone's counters must invalidate the right snapshots (the
user's, and their managers' for the employees' counters), and the clock must end a snapshot
at the first moment it could change: a deadline entering the N-minute window, a deadline
passing, the user's local midnight. Every read below goes through the snapshot when it
holds and is compared with `counters.recount`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crm_core import activities, card_cases, company, counters, user_cases
from crm_core.activities import ActivityFields
from crm_core.db import unit_of_work
from crm_core.models import UserCounter
from ingest.runtime import Runtime
from tests.conftest import empty_tables

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
MODE = company.ACTIVITY_RESPONSIBLE


class Office:
    """A boss, Anna under her, and Anna's card, in the test's database."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        with unit_of_work(runtime.sessions) as session:
            self.boss = user_cases.create_user(session, "boss@example.com", "Boss").id
            self.anna = user_cases.create_user(session, "anna@example.com", "Anna").id
            user_cases.edit_user(session, self.anna, NOW, manager_id=self.boss)
            self.card = card_cases.create_card(
                session,
                title="Acme",
                entity_type="deal",
                stage="new",
                responsible_id=self.anna,
                contact_emails=[],
                contact_phones=[],
                default_region="FR",
            ).id

    def read(self, user_id: int, now: datetime, mode: str = MODE) -> tuple[counters.Counters, bool]:
        """The counters, checked against a recount, and whether a snapshot served them."""
        with unit_of_work(self.runtime.sessions) as session:
            row = session.get_one(UserCounter, user_id)
            served = (
                row.snap_version == row.version
                and row.snap_mode == mode
                and row.snap_from is not None
                and row.snap_until is not None
                and row.snap_from <= now < row.snap_until
            )
            found = counters.read_counters(session, user_id, now, mode)
            user = user_cases.get_user(session, user_id)
            assert found == counters.recount(session, user, mode, now)
            return found, served

    def task(self, deadline: datetime, responsible_id: int | None = None) -> int:
        with unit_of_work(self.runtime.sessions) as session:
            return activities.create_activity(
                session,
                ActivityFields(
                    card_ids=[self.card],
                    type="call",
                    responsible_id=responsible_id or self.anna,
                    deadline=deadline,
                ),
                NOW,
            ).id


@pytest.fixture
def office(runtime: Runtime) -> Iterator[Office]:
    empty_tables(runtime.engine)
    yield Office(runtime)


def test_a_snapshot_serves_reads_until_the_clock_can_change_a_count(office: Office) -> None:
    office.task(NOW + timedelta(minutes=20))  # enters Anna's 15-minute window at 09:05
    first, served = office.read(office.anna, NOW)
    assert (first.planned, served) == (0, False)
    again, served = office.read(office.anna, NOW + timedelta(minutes=4, seconds=59))
    assert (again.planned, served) == (0, True)
    # 09:05: the deadline is 15 minutes away; the snapshot ends there, without any write
    soon, served = office.read(office.anna, NOW + timedelta(minutes=5))
    assert (soon.planned, soon.today, served) == (1, 0, False)
    assert office.read(office.anna, NOW + timedelta(minutes=19))[1]
    # 09:20: the deadline passes; it is now overdue today as well
    due, served = office.read(office.anna, NOW + timedelta(minutes=20))
    assert (due.planned, due.today, served) == (1, 1, False)
    # The employees' counters of her manager moved at the same moments
    boss, _ = office.read(office.boss, NOW + timedelta(minutes=20))
    assert boss.employees.planned == 1


def test_local_midnight_ends_a_snapshot(office: Office) -> None:
    with unit_of_work(office.runtime.sessions) as session:
        user_cases.edit_user(session, office.anna, NOW, timezone="Asia/Tokyo")
    office.task(datetime(2026, 11, 22, 14, 0, tzinfo=UTC))  # 23:00 in Tokyo
    evening, _ = office.read(office.anna, datetime(2026, 11, 22, 14, 30, tzinfo=UTC))
    assert evening.today == 1
    assert office.read(office.anna, datetime(2026, 11, 22, 14, 59, tzinfo=UTC))[1]
    # 15:00 UTC is midnight in Tokyo: no longer today, still planned (overdue)
    night, served = office.read(office.anna, datetime(2026, 11, 22, 15, 0, tzinfo=UTC))
    assert (night.today, night.planned, served) == (0, 1, False)


def test_every_kind_of_change_ends_the_snapshots_it_moves(office: Office) -> None:
    task = office.task(NOW + timedelta(minutes=60))
    assert office.read(office.anna, NOW)[0].planned == 0
    assert office.read(office.boss, NOW)[0].employees.planned == 0

    # A longer N for Anna: the task is in her window, and in her manager's employees' count
    with unit_of_work(office.runtime.sessions) as session:
        user_cases.edit_user(session, office.anna, NOW, planned_lead_minutes=90)
    assert office.read(office.anna, NOW)[0].planned == 1
    assert office.read(office.boss, NOW)[0].employees.planned == 1

    # Anna leaves her manager's team: the manager's snapshot goes too
    with unit_of_work(office.runtime.sessions) as session:
        user_cases.edit_user(session, office.anna, NOW, clear_manager=True)
    assert office.read(office.boss, NOW)[0].employees.planned == 0
    # ...and joins it again: the new manager's snapshot goes as well
    with unit_of_work(office.runtime.sessions) as session:
        user_cases.edit_user(session, office.anna, NOW, manager_id=office.boss)
    assert office.read(office.boss, NOW)[0].employees.planned == 1

    # Reassigned to the boss (activity mode), then the card handed to the boss (item mode)
    with unit_of_work(office.runtime.sessions) as session:
        activity = activities.get_activity(session, task, lock=True)
        activities.edit_activity(
            session, activity, ActivityFields(responsible_id=office.boss), None, NOW
        )
    assert office.read(office.anna, NOW)[0].planned == 0
    assert office.read(office.boss, NOW)[0].planned == 0  # the boss's own N is 15
    assert office.read(office.anna, NOW, company.ITEM_RESPONSIBLE)[0].planned == 1
    with unit_of_work(office.runtime.sessions) as session:
        card_cases.edit_card(session, office.card, NOW, responsible_id=office.boss)
    assert office.read(office.anna, NOW, company.ITEM_RESPONSIBLE)[0].planned == 0

    # A snapshot of one mode never answers for the other
    with unit_of_work(office.runtime.sessions) as session:
        user_cases.edit_user(session, office.boss, NOW, planned_lead_minutes=90)
    assert office.read(office.boss, NOW, company.ITEM_RESPONSIBLE)[0].planned == 1
    assert office.read(office.boss, NOW, MODE)[0].planned == 1

    # Closed: out of every count
    with unit_of_work(office.runtime.sessions) as session:
        activity = activities.get_activity(session, task, lock=True)
        activities.close_activity(session, activity, "done", None, office.boss, NOW)
    assert office.read(office.boss, NOW)[0].planned == 0


def test_a_snapshot_read_before_a_change_is_not_stored_after_it(office: Office) -> None:
    """A reader that counted before a writer committed must not leave its stale result."""
    office.task(NOW - timedelta(minutes=5))
    with unit_of_work(office.runtime.sessions) as session:
        version = session.scalar(
            select(UserCounter.version).where(UserCounter.user_id == office.anna)
        )
    office.task(NOW - timedelta(minutes=1))  # commits between the reader's two reads
    with unit_of_work(office.runtime.sessions) as session:
        session.execute(
            counters._STORE,
            {
                "p_user_id": office.anna,
                "p_version": version,
                "p_mode": MODE,
                "p_from": NOW,
                "p_until": NOW + timedelta(hours=1),
                "p_incoming": 0,
                "p_planned": 1,
                "p_today": 1,
                "p_team_incoming": 0,
                "p_team_planned": 0,
            },
        )
    found, served = office.read(office.anna, NOW)
    assert (found.planned, served) == (2, False)
