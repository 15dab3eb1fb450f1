"""Users' access: per-user API tokens (shown once, stored hashed, revocable), roles and
their levels, departments with their heads, the administrator flag, calendar feed tokens,
signed-out web sessions. The HTTP layer turns a bearer token into a `permissions.Actor`
through `actor_for_token`.
"""

from __future__ import annotations

import hashlib
import secrets
from contextlib import suppress
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_core import counters, permissions
from crm_core.errors import Conflict, NotFound, get_or_not_found
from crm_core.models import ApiToken, Department, EndedWebSession, Role, User, UserRole


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user_id: int, name: str, now: datetime) -> tuple[ApiToken, str]:
    """A new token for the user; the token itself is returned here only."""
    get_or_not_found(session, User, user_id, "user")
    token = secrets.token_urlsafe(32)
    row = ApiToken(user_id=user_id, name=name, token_hash=token_hash(token), created_at=now)
    session.add(row)
    session.flush()
    return row, token


def list_tokens(session: Session, user_id: int) -> list[ApiToken]:
    get_or_not_found(session, User, user_id, "user")
    return list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id))
    )


def revoke_token(session: Session, user_id: int, token_id: int, now: datetime) -> None:
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id:
        raise NotFound(f"token {token_id} of user {user_id} does not exist")
    if row.revoked_at is None:
        row.revoked_at = now


def actor_for_token(session: Session, token: str) -> permissions.Actor | None:
    """The user a live token belongs to, as an Actor; None for any other token."""
    row = session.execute(
        select(ApiToken.user_id, User.is_admin)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None))
    ).first()
    return None if row is None else permissions.Actor(row.user_id, admin=bool(row.is_admin))


# --- web page sessions ------------------------------------------------------------------


def end_web_session(session: Session, session_id: str, until: datetime, now: datetime) -> None:
    """Record a signed-out session until `until` (its cookie's own end: no copy of the
    cookie works after it anyway); ended sessions already past their end are forgotten."""
    session.execute(delete(EndedWebSession).where(EndedWebSession.ends_at < now))
    # Two sign-outs of one session at once: the second finds the first's row.
    with suppress(IntegrityError), session.begin_nested():
        session.add(EndedWebSession(session_id=session_id, ends_at=until))


def web_session_ended(session: Session, session_id: str) -> bool:
    return session.get(EndedWebSession, session_id) is not None


# --- roles and departments -------------------------------------------------------------


def create_role(session: Session, name: str, grants: dict[str, dict[str, str]]) -> Role:
    if session.scalar(select(Role.id).where(Role.name == name)) is not None:
        raise Conflict(f"a role named {name!r} already exists")
    role = Role(name=name, permissions=permissions.check_permissions(grants))
    session.add(role)
    session.flush()
    return role


def edit_role(session: Session, role_id: int, grants: dict[str, dict[str, str]]) -> Role:
    role = get_or_not_found(session, Role, role_id, "role")
    role.permissions = permissions.check_permissions(grants)
    return role


def list_roles(session: Session) -> list[Role]:
    return list(session.scalars(select(Role).order_by(Role.id)))


def set_roles(session: Session, user_id: int, role_ids: list[int]) -> list[int]:
    get_or_not_found(session, User, user_id, "user")
    for role_id in role_ids:
        get_or_not_found(session, Role, role_id, "role")
    session.execute(delete(UserRole).where(UserRole.user_id == user_id))
    for role_id in sorted(set(role_ids)):
        session.add(UserRole(user_id=user_id, role_id=role_id))
    session.flush()
    return sorted(set(role_ids))


def role_ids(session: Session, user_id: int) -> list[int]:
    return list(
        session.scalars(
            select(UserRole.role_id).where(UserRole.user_id == user_id).order_by(UserRole.role_id)
        )
    )


def create_department(session: Session, name: str, head_id: int | None) -> Department:
    if session.scalar(select(Department.id).where(Department.name == name)) is not None:
        raise Conflict(f"a department named {name!r} already exists")
    if head_id is not None:
        get_or_not_found(session, User, head_id, "user")
    department = Department(name=name, head_id=head_id)
    session.add(department)
    session.flush()
    return department


def list_departments(session: Session) -> list[Department]:
    return list(session.scalars(select(Department).order_by(Department.id)))


def place_user(
    session: Session,
    user_id: int,
    *,
    department_id: int | None = None,
    clear_department: bool = False,
    is_admin: bool | None = None,
) -> User:
    user = get_or_not_found(session, User, user_id, "user")
    if clear_department:
        user.department_id = None
    elif department_id is not None:
        get_or_not_found(session, Department, department_id, "department")
        user.department_id = department_id
    if is_admin is not None:
        user.is_admin = is_admin
    counters.invalidate(session, [user.id])
    return user


# --- calendar feeds --------------------------------------------------------------------


def issue_calendar_token(session: Session, user_id: int) -> str:
    """A new secret for the user's iCalendar feed URL (the previous one stops working)."""
    user = get_or_not_found(session, User, user_id, "user")
    token = secrets.token_urlsafe(24)
    user.calendar_token_hash = token_hash(token)
    return token


def user_for_calendar(session: Session, user_id: int, token: str) -> User:
    user = session.get(User, user_id)
    if (
        user is None
        or user.calendar_token_hash is None
        or not secrets.compare_digest(user.calendar_token_hash, token_hash(token))
    ):
        raise NotFound("no such calendar")
    return user


def user_exists(session: Session, user_id: int) -> bool:
    return 0 < user_id < 2**31 and session.get(User, user_id) is not None
