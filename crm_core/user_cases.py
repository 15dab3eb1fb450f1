"""User use cases (create, edit, list, counters), each inside the caller's transaction:
called by the JSON API, the CLI and the mail pipeline (a forwarder's time zone)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core import counters, focus
from crm_core.errors import Conflict, InvalidInput, NotFound, get_or_not_found
from crm_core.models import Activity, User, UserCounter


def create_user(session: Session, email: str, name: str, timezone: str = "UTC") -> User:
    email = email.strip().lower()
    _check_timezone(timezone)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with e-mail {email} already exists")
    user = User(email=email, name=name, timezone=timezone)
    session.add(user)
    session.flush()
    session.add(UserCounter(user_id=user.id, incoming=0, incoming_items=0))
    return user


def _check_timezone(timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {timezone!r}") from exc


def timezone_of(session: Session, email: str) -> str | None:
    """The time zone of the user with this address (dates in their forwards are theirs)."""
    return session.scalar(select(User.timezone).where(User.email == email.strip().lower()))


def get_user(session: Session, user_id: int) -> User:
    return get_or_not_found(session, User, user_id, "user")


def list_users(session: Session) -> list[User]:
    """Everyone, by name: the colleagues one hands a card to, or acts for."""
    return list(session.scalars(select(User).order_by(User.name, User.id)))


def user_counters(session: Session, user_id: int, now: datetime) -> counters.Counters:
    """The user's counters in the company's current counter mode."""
    found = counters.read_counters(session, user_id, now)
    if found is None:
        raise NotFound(f"user {user_id} does not exist")
    return found


def edit_user(
    session: Session,
    user_id: int,
    now: datetime,
    *,
    planned_lead_minutes: int | None = None,
    timezone: str | None = None,
    manager_id: int | None = None,
    clear_manager: bool = False,
) -> User:
    user = get_user(session, user_id)
    counters.invalidate(session, [user.id])  # their counters and the managers' above them now
    if timezone is not None:
        _check_timezone(timezone)
        user.timezone = timezone
    if clear_manager:
        user.manager_id = None
    elif manager_id is not None:
        get_user(session, manager_id)
        if manager_id == user.id or user.id in _managers_above(session, manager_id):
            raise InvalidInput("a user cannot be managed by themselves or their subordinates")
        user.manager_id = manager_id
    if planned_lead_minutes is not None and planned_lead_minutes != user.planned_lead_minutes:
        if not 0 <= planned_lead_minutes <= 7 * 24 * 60:
            raise InvalidInput("planned_lead_minutes must be between 0 and 10080")
        user.planned_lead_minutes = planned_lead_minutes
        # Their open activities' "N minutes before" focus moments move with N.
        for activity in session.scalars(
            select(Activity).where(
                Activity.responsible_id == user.id,
                Activity.is_open,
                Activity.deadline.is_not(None),
            )
        ):
            focus.schedule(activity, planned_lead_minutes, now, new_deadline=False)
    session.flush()
    counters.invalidate(session, [user.id])  # ...and the managers above them from now on
    return user


def _managers_above(session: Session, user_id: int) -> set[int]:
    seen: set[int] = set()
    current: int | None = user_id
    while current is not None and current not in seen:
        seen.add(current)
        current = session.scalar(select(User.manager_id).where(User.id == current))
    return seen
