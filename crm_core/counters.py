"""Per-user counters (seed 000): Incoming, Planned, For today.

Incoming is maintained in `user_counters` by the same transaction that opens or closes an
incoming activity, so reading it is one row. `recount` computes all three from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from crm_core.models import Activity, User, UserCounter


@dataclass(frozen=True)
class Counters:
    incoming: int
    planned: int
    today: int


def change_incoming(session: Session, user_id: int, delta: int) -> None:
    """Atomic increment (no read-modify-write race between workers)."""
    result = session.execute(
        update(UserCounter)
        .where(UserCounter.user_id == user_id)
        .values(incoming=UserCounter.incoming + delta)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        session.add(UserCounter(user_id=user_id, incoming=delta))
        session.flush()


def read_counters(session: Session, user: User, now: datetime) -> Counters:
    incoming = session.scalar(select(UserCounter.incoming).where(UserCounter.user_id == user.id))
    planned, due_today = _deadline_counts(session, user, now)
    incoming = incoming or 0
    return Counters(incoming=incoming, planned=planned, today=incoming + due_today)


def recount(session: Session, user: User, now: datetime) -> Counters:
    """All counters from the activities themselves: the reference the maintained ones must equal."""
    incoming = (
        session.scalar(
            select(func.count())
            .select_from(Activity)
            .where(Activity.responsible_id == user.id, Activity.is_open, Activity.incoming)
        )
        or 0
    )
    planned, due_today = _deadline_counts(session, user, now)
    return Counters(incoming=incoming, planned=planned, today=incoming + due_today)


def _deadline_counts(session: Session, user: User, now: datetime) -> tuple[int, int]:
    """(planned, overdue-with-a-deadline-today) among the user's open scheduled activities."""
    soon = now + timedelta(minutes=user.remind_minutes)
    zone = ZoneInfo(user.timezone)
    local_midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    open_scheduled = (
        select(func.count())
        .select_from(Activity)
        .where(
            Activity.responsible_id == user.id,
            Activity.is_open,
            Activity.deadline.is_not(None),
        )
    )
    planned = session.scalar(open_scheduled.where(Activity.deadline <= soon)) or 0
    due_today = (
        session.scalar(
            open_scheduled.where(Activity.deadline >= local_midnight, Activity.deadline <= now)
        )
        or 0
    )
    return planned, due_today
