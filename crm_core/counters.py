"""Per-user counters (seed 000): Incoming, Planned, For today, and the employees' ones.

Incoming is maintained per user in both counter modes by the transaction that changes an
activity (`change`), so reading it is one row. Planned and For today depend on the clock,
so they are counted at read time over one user's open activities with a deadline, through
a partial index (never a scan of all activities). `recount` recomputes everything from
the raw rows, in Python, as the reference the fast path must always equal.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, literal_column, select, union_all, update
from sqlalchemy.orm import Session, aliased

from crm_core.company import ACTIVITY_RESPONSIBLE, counter_mode_column, counter_mode_of
from crm_core.models import Activity, Card, User, UserCounter


@dataclass(frozen=True)
class TeamCounters:
    incoming: int
    planned: int


@dataclass(frozen=True)
class Counters:
    incoming: int
    planned: int
    today: int
    employees: TeamCounters


@dataclass(frozen=True)
class Counted:
    """Who an open incoming activity counts for, in each mode."""

    responsible_id: int
    card_responsible_id: int


def counted(activity: Activity) -> Counted | None:
    if not (activity.is_open and activity.incoming):
        return None
    return Counted(activity.responsible_id, activity.card_responsible_id)


def change(session: Session, before: Counted | None, after: Counted | None) -> None:
    """Move the maintained Incoming counts from `before` to `after` (atomic increments)."""
    if before == after:
        return
    for state, delta in ((before, -1), (after, +1)):
        if state is not None:
            _add(session, state.responsible_id, UserCounter.incoming, delta)
            _add(session, state.card_responsible_id, UserCounter.incoming_items, delta)


def _add(session: Session, user_id: int, column: object, delta: int) -> None:
    result = session.execute(
        update(UserCounter).where(UserCounter.user_id == user_id).values({column: column + delta})  # type: ignore[operator]
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        row = UserCounter(user_id=user_id, incoming=0, incoming_items=0)
        setattr(row, column.key, delta)  # type: ignore[attr-defined]
        session.add(row)
        session.flush()


def subordinates(session: Session, user_id: int) -> list[int]:
    """Everyone below the user in the manager hierarchy (direct and indirect)."""
    below = _below(bindparam("user_id"))
    return list(session.scalars(select(below.c.id), {"user_id": user_id}))


def _below(user_id: Any) -> Any:
    below = select(User.id).where(User.manager_id == user_id).cte("below", recursive=True)
    deeper = aliased(User)
    return below.union(select(deeper.id).where(deeper.manager_id == below.c.id))


# Statements are built once and executed with parameters: building them is most of the cost
# of a read at this size, and a fixed text lets the driver prepare it server-side.
_PEOPLE = union_all(
    select(User.id, User.planned_lead_minutes, User.timezone, counter_mode_column()).where(
        User.id == bindparam("user_id")
    ),
    select(User.id, User.planned_lead_minutes, User.timezone, literal_column("NULL")).where(
        User.id.in_(select(_below(bindparam("user_id")).c.id))
    ),
)


@cache
def _counts_statement(mode: str, lead_groups: int) -> Any:
    owner = _owner_column(mode)
    incoming = _incoming_column(mode)

    def open_with_deadline(owners: Any, *conditions: Any) -> Any:
        return (
            select(func.count())
            .select_from(Activity)
            .where(Activity.is_open, owners, Activity.deadline.is_not(None), *conditions)
            .scalar_subquery()
        )

    me = owner == bindparam("user_id")
    columns = [
        select(incoming).where(UserCounter.user_id == bindparam("user_id")).scalar_subquery(),
        open_with_deadline(me, Activity.deadline <= bindparam("soon")),
        open_with_deadline(
            me, Activity.deadline >= bindparam("midnight"), Activity.deadline <= bindparam("now")
        ),
    ]
    if lead_groups:
        columns.append(
            select(func.coalesce(func.sum(incoming), literal_column("0")))
            .where(UserCounter.user_id.in_(bindparam("team", expanding=True)))
            .scalar_subquery()
        )
        for n in range(lead_groups):
            columns.append(
                open_with_deadline(
                    owner.in_(bindparam(f"group{n}", expanding=True)),
                    Activity.deadline <= bindparam(f"soon{n}"),
                )
            )
    return select(*columns)


def read_counters(
    session: Session, user_id: int, now: datetime, mode: str | None = None
) -> Counters | None:
    """The user's counters (None if no such user), in `mode` or else the company's mode.

    Two statements whatever the data size: the user, their team (with each member's N) and
    the mode; then every count as an index-range subquery of one SELECT.
    """
    # Core execution on the session's connection: the ORM layer adds nothing for plain rows.
    connection = session.connection()
    people = connection.execute(_PEOPLE, {"user_id": user_id}).all()
    me = next((p for p in people if p.id == user_id), None)
    if me is None:
        return None
    mode = mode or counter_mode_of(me[3])
    by_lead: dict[int, list[int]] = defaultdict(list)
    for person in people:
        if person.id != user_id:
            by_lead[person.planned_lead_minutes].append(person.id)
    params: dict[str, Any] = {
        "user_id": user_id,
        "soon": now + timedelta(minutes=me.planned_lead_minutes),
        "midnight": _local_midnight(now, me.timezone),
        "now": now,
        "team": [member for group in by_lead.values() for member in group],
    }
    for n, (lead, members) in enumerate(by_lead.items()):
        params[f"group{n}"] = members
        params[f"soon{n}"] = now + timedelta(minutes=lead)
    row = connection.execute(_counts_statement(mode, len(by_lead)), params).one()
    incoming, planned, overdue_today = (int(v or 0) for v in row[:3])
    team = TeamCounters(0, 0)
    if by_lead:
        team = TeamCounters(incoming=int(row[3] or 0), planned=sum(int(v) for v in row[4:]))
    return Counters(
        incoming=incoming, planned=planned, today=incoming + overdue_today, employees=team
    )


def _incoming_column(mode: str) -> Any:
    return UserCounter.incoming if mode == ACTIVITY_RESPONSIBLE else UserCounter.incoming_items


def _owner_column(mode: str) -> Any:
    return Activity.responsible_id if mode == ACTIVITY_RESPONSIBLE else Activity.card_responsible_id


def _local_midnight(now: datetime, timezone: str) -> datetime:
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def recount(session: Session, user: User, mode: str, now: datetime) -> Counters:
    """Every counter from scratch: all activities, their cards and users, counted in Python.

    Deliberately shares nothing with the fast path (no maintained rows, no copied card
    responsible), so a test comparing the two catches drift in either.
    """
    users = {u.id: u for u in session.scalars(select(User))}
    card_owner = {
        row.id: row.responsible_id for row in session.execute(select(Card.id, Card.responsible_id))
    }
    rows = session.execute(
        select(
            Activity.card_id,
            Activity.responsible_id,
            Activity.is_open,
            Activity.incoming,
            Activity.deadline,
        )
    ).all()

    def owner_of(row: tuple[int, int, bool, bool, datetime | None]) -> int:
        return row[1] if mode == ACTIVITY_RESPONSIBLE else card_owner[row[0]]

    def own(uid: int) -> tuple[int, int, int]:
        person = users[uid]
        soon = now + timedelta(minutes=person.planned_lead_minutes)
        midnight = _local_midnight(now, person.timezone)
        incoming = planned = overdue_today = 0
        for row in rows:
            _card, _resp, is_open, is_incoming, deadline = row
            if not is_open or owner_of(row) != uid:
                continue
            incoming += bool(is_incoming)
            if deadline is not None:
                planned += deadline <= soon
                overdue_today += midnight <= deadline <= now
        return incoming, planned, incoming + overdue_today

    team: set[int] = set()
    frontier = {user.id}
    while frontier:
        frontier = {u.id for u in users.values() if u.manager_id in frontier} - team
        team |= frontier
    incoming, planned, today = own(user.id)
    team_incoming = sum(own(uid)[0] for uid in team)
    team_planned = sum(own(uid)[1] for uid in team)
    return Counters(incoming, planned, today, TeamCounters(team_incoming, team_planned))
