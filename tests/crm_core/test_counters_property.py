"""Property: after any sequence of activity operations, the fast counters equal a recount.

Hypothesis drives random sequences of creates, closes, reopens, deletes, reassignments,
deadline moves, card handovers, N changes, manager changes and clock moves against the
real database (PostgreSQL in the PostgreSQL run), and compares, after every step, every
user's counters in both modes with `counters.recount` (all rows, counted in Python).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core import activities, card_cases, counters, user_cases
from crm_core.activities import ActivityFields
from crm_core.company import COUNTER_MODES
from crm_core.db import unit_of_work
from crm_core.errors import CoreError
from crm_core.models import Activity, User
from ingest.runtime import Runtime
from tests.conftest import empty_tables

USERS = 3
CARDS = 3
START = datetime(2026, 11, 22, 22, 30, tzinfo=UTC)
ZONES = ["UTC", "Asia/Tokyo", "America/Los_Angeles"]

index = st.integers(0, 50)
offset = st.none() | st.integers(-36 * 60, 36 * 60)  # deadline: minutes from now, or none
operation = st.one_of(
    st.tuples(st.just("create"), index, index, st.booleans(), offset),
    st.tuples(st.just("close"), index, st.sampled_from(["done", "succeeded", "cancelled"])),
    st.tuples(st.just("reopen"), index),
    st.tuples(st.just("delete"), index),
    st.tuples(st.just("assign"), index, index),
    st.tuples(st.just("deadline"), index, offset),
    st.tuples(st.just("move"), index, index),
    st.tuples(st.just("hand_over"), index, index),
    st.tuples(st.just("lead"), index, st.sampled_from([0, 5, 15, 60, 24 * 60])),
    st.tuples(st.just("manager"), index, st.none() | index),
    st.tuples(st.just("clock"), st.integers(1, 12 * 60)),
    st.tuples(st.just("bulk_done"), st.lists(index, max_size=4)),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(operation, min_size=1, max_size=30))
def test_counters_equal_a_recount_after_every_step(
    runtime: Runtime, steps: list[tuple[Any, ...]]
) -> None:
    empty_tables(runtime.engine)
    now = START
    with unit_of_work(runtime.sessions) as session:
        users = [
            user_cases.create_user(session, f"u{n}@example.com", f"User {n}", ZONES[n]).id
            for n in range(USERS)
        ]
        cards = [
            card_cases.create_card(
                session,
                title=f"card {n}",
                entity_type="deal",
                stage="new",
                responsible_id=users[n % USERS],
                contact_emails=[],
                contact_phones=[],
                default_region="FR",
            ).id
            for n in range(CARDS)
        ]
    for number, step in enumerate(steps):
        with unit_of_work(runtime.sessions) as session:
            now = _apply(session, step, users, cards, now)
        # Each read may renew the user's snapshot in its mode; the order of modes alternates
        # so that the next step also reads snapshots taken before it (the cached path).
        modes = COUNTER_MODES if number % 2 else tuple(reversed(COUNTER_MODES))
        with unit_of_work(runtime.sessions) as session:
            for user in session.scalars(select(User)):
                for mode in modes:
                    fast = counters.read_counters(session, user.id, now, mode)
                    slow = counters.recount(session, user, mode, now)
                    assert fast == slow, (step, mode, user.id)


def _apply(
    session: Session, step: tuple[Any, ...], users: list[int], cards: list[int], now: datetime
) -> datetime:
    kind, *args = step
    ids = list(session.scalars(select(Activity.id).order_by(Activity.id)))
    try:
        # A savepoint, as the API's transaction would roll back a refused operation whole.
        with session.begin_nested():
            return _step(session, kind, args, users, cards, now, ids)
    except CoreError:
        return now  # refused (a manager loop): nothing changed; counters still checked


def _step(
    session: Session,
    kind: str,
    args: list[Any],
    users: list[int],
    cards: list[int],
    now: datetime,
    ids: list[int],
) -> datetime:
    def pick(n: int) -> Activity | None:
        return session.get(Activity, ids[n % len(ids)]) if ids else None

    def deadline(minutes: int | None) -> datetime | None:
        return None if minutes is None else now + timedelta(minutes=minutes)

    if kind == "create":
        card, user, incoming, minutes = args
        activities.create_activity(
            session,
            ActivityFields(
                card_ids=[cards[card % CARDS]],
                type="call",
                responsible_id=users[user % USERS],
                deadline=None if incoming else deadline(minutes),
            ),
            now,
            incoming=incoming,
        )
    elif kind == "clock":
        return now + timedelta(minutes=args[0])
    elif kind == "hand_over":
        card_cases.edit_card(
            session, cards[args[0] % CARDS], now, responsible_id=users[args[1] % USERS]
        )
    elif kind == "lead":
        user_cases.edit_user(session, users[args[0] % USERS], now, planned_lead_minutes=args[1])
    elif kind == "manager":
        user, manager = args
        user_cases.edit_user(
            session,
            users[user % USERS],
            now,
            manager_id=None if manager is None else users[manager % USERS],
            clear_manager=manager is None,
        )
    elif kind == "bulk_done":
        chosen = [ids[n % len(ids)] for n in args[0]] if ids else []
        activities.bulk(session, chosen, "done", ActivityFields(), None, now)
    elif (activity := pick(args[0])) is not None:
        if kind == "close":
            activities.close_activity(session, activity, args[1], None, users[0], now)
        elif kind == "reopen":
            activities.reopen_activity(session, activity, users[0], now)
        elif kind == "delete":
            activities.delete_activity(session, activity, now)
        elif kind == "assign":
            fields = ActivityFields(responsible_id=users[args[1] % USERS])
            activities.edit_activity(session, activity, fields, None, now)
        elif kind == "deadline":
            fields = ActivityFields(deadline=deadline(args[1]), clear_deadline=args[1] is None)
            activities.edit_activity(session, activity, fields, None, now)
        elif kind == "move":
            fields = ActivityFields(card_ids=[cards[args[1] % CARDS]])
            activities.edit_activity(session, activity, fields, None, now)
    return now
