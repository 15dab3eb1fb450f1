"""Users and access tables (users, departments, roles, API tokens, web sessions) and
the per-user maintained counters; read by `crm_core.users`, `permissions`, `counters`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base
from crm_core.models.common import UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("ix_users_calendar_token_hash", "calendar_token_hash", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # N: minutes before a deadline at which an activity counts as Planned and focuses its card.
    planned_lead_minutes: Mapped[int] = mapped_column(Integer, default=15)
    # The user's manager: managers see their subordinates' counters ("employees").
    manager_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Access rights (seed 003): a department (for the "department" level), the roles below,
    # and administrators, who may do everything.
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL", use_alter=True), default=None, index=True
    )
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # SHA-256 of the secret in the user's iCalendar feed URL; None: no feed.
    calendar_token_hash: Mapped[str | None] = mapped_column(String(64), default=None)


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    head_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )


class Role(Base):
    """Levels per entity type and action: {"deal": {"read": "all", "edit": "own", ...}}."""

    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    permissions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[int] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ApiToken(Base):
    """A user's API token: only its SHA-256 is kept; every request with it acts as the user."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class EndedWebSession(Base):
    """A web page session that was signed out: a copy of its cookie (which seals this id)
    signs nothing in any more. Kept until the cookie's own end, then forgotten."""

    __tablename__ = "ended_web_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class UserCounter(Base):
    """Maintained counts per user, changed in the same transaction as the activities they count.

    Both counter modes are kept up to date at all times: switching modes rebuilds nothing.
    The row also caches the user's last counters read (the `snap_` columns).
    """

    __tablename__ = "user_counters"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # Open incoming activities the user is responsible for ("activity responsible" mode)...
    incoming: Mapped[int] = mapped_column(Integer, default=0)
    # ...and open incoming activities on cards the user is responsible for ("item responsible").
    incoming_items: Mapped[int] = mapped_column(Integer, default=0)
    # Raised in the transaction of every change that may move this user's counters or their
    # employees' (see `counters.invalidate`): a snapshot taken at another version is stale.
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The last counters read, in `snap_mode`, exact for `snap_from <= now < snap_until` while
    # `snap_version == version`: the clock-driven counts can only change at `snap_until`.
    snap_version: Mapped[int | None] = mapped_column(BigInteger, default=None)
    snap_mode: Mapped[str | None] = mapped_column(String(32), default=None)
    snap_from: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    snap_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    snap_incoming: Mapped[int | None] = mapped_column(Integer, default=None)
    snap_planned: Mapped[int | None] = mapped_column(Integer, default=None)
    snap_today: Mapped[int | None] = mapped_column(Integer, default=None)
    snap_team_incoming: Mapped[int | None] = mapped_column(Integer, default=None)
    snap_team_planned: Mapped[int | None] = mapped_column(Integer, default=None)
