"""Per-user counters (seed 000): Incoming, Planned, For today, and the employees' ones.

Incoming is maintained per user in both counter modes by the transaction that changes an
activity (`change`). Planned and For today depend on the clock, so they are counted over one
user's open activities with a deadline, through partial indexes, together with the next
moment the clock can change any of them (a deadline entering the N-minute window, a deadline
passing, local midnight). That result is kept on the user's row as a snapshot, exact until
that moment or until a change raises the user's version (`invalidate`): most reads are one
primary-key row. `recount` recomputes everything from the raw rows, in Python, as the
reference every read must equal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, literal_column, select, union_all, update
from sqlalchemy.orm import Session, aliased

from crm_core.company import ACTIVITY_RESPONSIBLE, counter_mode_column, counter_mode_of
from crm_core.db import may_write
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
    """What the counters read of an activity: who it counts for in each mode, and how."""

    responsible_id: int
    card_responsible_id: int
    incoming: bool
    deadline: datetime | None


def counted(activity: Activity) -> Counted | None:
    """None for an activity no counter can ever see (closed, or open with no deadline and
    not incoming)."""
    if not activity.is_open or not (activity.incoming or activity.deadline is not None):
        return None
    return Counted(
        activity.responsible_id,
        activity.card_responsible_id,
        bool(activity.incoming),
        activity.deadline,
    )


def change(session: Session, before: Counted | None, after: Counted | None) -> None:
    """Move the maintained Incoming counts from `before` to `after` (atomic increments) and
    invalidate the snapshots of everyone whose counters may have moved."""
    if before == after:
        return
    for state, delta in ((before, -1), (after, +1)):
        if state is not None and state.incoming:
            _add(session, state.responsible_id, UserCounter.incoming, delta)
            _add(session, state.card_responsible_id, UserCounter.incoming_items, delta)
    invalidate(
        session,
        {
            user
            for state in (before, after)
            if state is not None
            for user in (state.responsible_id, state.card_responsible_id)
        },
    )


def invalidate(session: Session, user_ids: Iterable[int]) -> None:
    """Raise the version of these users and of everyone above them (whose employees'
    counters include theirs), in the caller's transaction: their snapshots no longer hold."""
    ids = sorted(set(user_ids))
    if not ids:
        return
    chain = select(User.id, User.manager_id).where(User.id.in_(ids)).cte("chain", recursive=True)
    above = aliased(User)
    chain = chain.union(select(above.id, above.manager_id).where(above.id == chain.c.manager_id))
    session.execute(
        update(UserCounter)
        .where(UserCounter.user_id.in_(select(chain.c.id)))
        .values(version=UserCounter.version + 1)
        .execution_options(synchronize_session=False)
    )


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
    """Every count, and the next deadline that moves each, as index-range subqueries."""
    owner = _owner_column(mode)
    incoming = _incoming_column(mode)

    def open_with_deadline(owners: Any, *conditions: Any) -> Any:
        return (
            select(func.count())
            .select_from(Activity)
            .where(Activity.is_open, owners, Activity.deadline.is_not(None), *conditions)
            .scalar_subquery()
        )

    def next_deadline(owners: Any, after: Any) -> Any:
        return (
            select(func.min(Activity.deadline))
            .where(Activity.is_open, owners, Activity.deadline > after)
            .scalar_subquery()
        )

    me = owner == bindparam("user_id")
    columns = [
        select(incoming).where(UserCounter.user_id == bindparam("user_id")).scalar_subquery(),
        open_with_deadline(me, Activity.deadline <= bindparam("soon")),
        open_with_deadline(
            me, Activity.deadline >= bindparam("midnight"), Activity.deadline <= bindparam("now")
        ),
        next_deadline(me, bindparam("soon")),
        next_deadline(me, bindparam("now")),
    ]
    if lead_groups:
        columns.append(
            select(func.coalesce(func.sum(incoming), literal_column("0")))
            .where(UserCounter.user_id.in_(bindparam("team", expanding=True)))
            .scalar_subquery()
        )
        for n in range(lead_groups):
            group = owner.in_(bindparam(f"group{n}", expanding=True))
            columns.append(open_with_deadline(group, Activity.deadline <= bindparam(f"soon{n}")))
            columns.append(next_deadline(group, bindparam(f"soon{n}")))
    return select(*columns)


_SNAPSHOT = select(
    UserCounter.version,
    UserCounter.snap_version,
    UserCounter.snap_mode,
    UserCounter.snap_from,
    UserCounter.snap_until,
    UserCounter.snap_incoming,
    UserCounter.snap_planned,
    UserCounter.snap_today,
    UserCounter.snap_team_incoming,
    UserCounter.snap_team_planned,
    counter_mode_column(),
).where(UserCounter.user_id == bindparam("user_id"))

# Kept only if no change raised the version since it was read, and never waiting for a
# writer that holds the row (SKIP LOCKED; SQLite has one writer and ignores the clause).
_STORE = (
    update(UserCounter)
    .where(
        UserCounter.user_id.in_(
            select(UserCounter.user_id)
            .where(
                UserCounter.user_id == bindparam("p_user_id"),
                UserCounter.version == bindparam("p_version"),
            )
            .with_for_update(skip_locked=True)
        )
    )
    .values(
        snap_version=bindparam("p_version"),
        snap_mode=bindparam("p_mode"),
        snap_from=bindparam("p_from"),
        snap_until=bindparam("p_until"),
        snap_incoming=bindparam("p_incoming"),
        snap_planned=bindparam("p_planned"),
        snap_today=bindparam("p_today"),
        snap_team_incoming=bindparam("p_team_incoming"),
        snap_team_planned=bindparam("p_team_planned"),
    )
)


def read_counters(
    session: Session, user_id: int, now: datetime, mode: str | None = None
) -> Counters | None:
    """The user's counters (None if no such user), in `mode` or else the company's mode.

    One primary-key row while the user's snapshot holds; else two statements whatever the
    data size (the user, their team and the mode; then every count), and the snapshot is
    renewed where the session may write.
    """
    # Core execution on the session's connection: the ORM layer adds nothing for plain rows.
    connection = session.connection()
    snap = connection.execute(_SNAPSHOT, {"user_id": user_id}).one_or_none()
    if snap is not None and _holds(snap, mode or counter_mode_of(snap[-1]), now):
        return Counters(
            incoming=snap.snap_incoming,
            planned=snap.snap_planned,
            today=snap.snap_today,
            employees=TeamCounters(snap.snap_team_incoming, snap.snap_team_planned),
        )
    found = _count(session, user_id, now, mode)
    if found is None:
        return None
    counts, counted_mode, until = found
    if snap is not None and may_write(session):
        connection.execute(
            _STORE,
            {
                "p_user_id": user_id,
                "p_version": snap.version,
                "p_mode": counted_mode,
                "p_from": now,
                "p_until": until,
                "p_incoming": counts.incoming,
                "p_planned": counts.planned,
                "p_today": counts.today,
                "p_team_incoming": counts.employees.incoming,
                "p_team_planned": counts.employees.planned,
            },
        )
    return counts


def _holds(snap: Any, mode: str, now: datetime) -> bool:
    return bool(
        snap.snap_version == snap.version
        and snap.snap_mode == mode
        and snap.snap_from is not None
        and snap.snap_from <= now < snap.snap_until
    )


def _count(
    session: Session, user_id: int, now: datetime, mode: str | None
) -> tuple[Counters, str, datetime] | None:
    """The counters from the activities, their mode, and the first moment they may change."""
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
    lead = timedelta(minutes=me.planned_lead_minutes)
    params: dict[str, Any] = {
        "user_id": user_id,
        "soon": now + lead,
        "midnight": _local_midnight(now, me.timezone),
        "now": now,
        "team": [member for group in by_lead.values() for member in group],
    }
    for n, (minutes, members) in enumerate(by_lead.items()):
        params[f"group{n}"] = members
        params[f"soon{n}"] = now + timedelta(minutes=minutes)
    row = connection.execute(_counts_statement(mode, len(by_lead)), params).one()
    incoming, planned, overdue_today = (int(v or 0) for v in row[:3])
    # The clock moves a count only when a deadline enters someone's window, when one passes
    # (For today) and at the user's local midnight; until the first of these, nothing can.
    moments = [_next_midnight(now, me.timezone)]
    if row[3] is not None:
        moments.append(row[3] - lead)
    if row[4] is not None:
        moments.append(row[4])
    team = TeamCounters(0, 0)
    if by_lead:
        team_planned = 0
        for n, minutes in enumerate(by_lead):
            count, next_due = row[6 + 2 * n], row[7 + 2 * n]
            team_planned += int(count)
            if next_due is not None:
                moments.append(next_due - timedelta(minutes=minutes))
        team = TeamCounters(incoming=int(row[5] or 0), planned=team_planned)
    counts = Counters(
        incoming=incoming, planned=planned, today=incoming + overdue_today, employees=team
    )
    return counts, mode, min(moments)


def _incoming_column(mode: str) -> Any:
    return UserCounter.incoming if mode == ACTIVITY_RESPONSIBLE else UserCounter.incoming_items


def _owner_column(mode: str) -> Any:
    return Activity.responsible_id if mode == ACTIVITY_RESPONSIBLE else Activity.card_responsible_id


def _local_midnight(now: datetime, timezone: str) -> datetime:
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_midnight(now: datetime, timezone: str) -> datetime:
    """When the user's local date next changes (a skipped 00:00 gives the DST jump itself)."""
    zone = ZoneInfo(timezone)
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(), tzinfo=zone).astimezone(UTC)


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
