"""Company-wide settings of the CRM core: counter mode, activity types and statuses.

Stored in `company_settings` (one JSON value per key) and read per use case, so a change
through the API applies at once, in every process, with nothing to rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.errors import InvalidInput
from crm_core.models import CompanySetting

ITEM_RESPONSIBLE = "item_responsible"
ACTIVITY_RESPONSIBLE = "activity_responsible"
COUNTER_MODES = (ITEM_RESPONSIBLE, ACTIVITY_RESPONSIBLE)


@dataclass(frozen=True)
class Status:
    """An activity status (seed 004); a closing status ends the activity, with success or not."""

    name: str
    closed: bool
    success: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "closed": self.closed, "success": self.success}


DEFAULT_STATUSES = [
    Status("scheduled", closed=False),
    Status("postponed", closed=False),
    Status("done", closed=True, success=True),
    Status("succeeded", closed=True, success=True),
    Status("cancelled", closed=True, success=False),
]
# The CRM's own activity types; the channels' (call, email, chat...) are added to the
# default by the layer that runs them (`ingest.registry`, through the session factory).
DEFAULT_TYPES = ["meeting", "task", "comment"]

# History settings (seed 002): who may reopen a closed task, who may delete a document.
# "editors": anyone who may edit the card; "responsible": the card's responsible (and
# administrators); "admins": administrators only; "nobody" (documents only).
WHO = ("editors", "responsible", "admins", "nobody")

DEFAULTS: dict[str, Any] = {
    "counter_mode": ACTIVITY_RESPONSIBLE,
    "activity_types": DEFAULT_TYPES,
    "activity_statuses": [s.as_dict() for s in DEFAULT_STATUSES],
    "reopen_tasks": "editors",
    "delete_documents": "admins",
}


def get(session: Session, key: str) -> Any:
    row = session.get(CompanySetting, key)
    if row is not None:
        return row.value
    return session.info.get("defaults", {}).get(key, DEFAULTS[key])


def put(session: Session, key: str, value: Any) -> None:
    _validate(key, value)
    row = session.get(CompanySetting, key)
    if row is None:
        session.add(CompanySetting(key=key, value=value))
    else:
        row.value = value


def all_settings(session: Session) -> dict[str, Any]:
    return {key: get(session, key) for key in DEFAULTS}


def counter_mode_column() -> Any:
    """The counter mode as a scalar subquery, to read it in the same statement as a user."""
    return (
        select(CompanySetting.value).where(CompanySetting.key == "counter_mode").scalar_subquery()
    )


def counter_mode_of(stored: Any) -> str:
    return ACTIVITY_RESPONSIBLE if stored is None else str(stored)


def statuses(session: Session) -> dict[str, Status]:
    return {s["name"]: Status(**s) for s in get(session, "activity_statuses")}


def status(session: Session, name: str) -> Status:
    found = statuses(session).get(name)
    if found is None:
        raise InvalidInput(f"unknown activity status {name!r}")
    return found


def first_open_status(session: Session) -> str:
    """What a new or reopened activity starts as: the list's first open status."""
    return next(s.name for s in statuses(session).values() if not s.closed)


def check_type(session: Session, name: str) -> None:
    if name not in get(session, "activity_types"):
        raise InvalidInput(f"unknown activity type {name!r}")


def _validate(key: str, value: Any) -> None:
    if key not in DEFAULTS:
        raise InvalidInput(f"unknown setting {key!r}")
    if key == "reopen_tasks" and value not in WHO[:3]:
        raise InvalidInput(f"reopen_tasks must be one of {', '.join(WHO[:3])}")
    if key == "delete_documents" and value not in WHO:
        raise InvalidInput(f"delete_documents must be one of {', '.join(WHO)}")
    if key == "counter_mode" and value not in COUNTER_MODES:
        raise InvalidInput(f"counter_mode must be one of {', '.join(COUNTER_MODES)}")
    if key == "activity_types" and not (
        isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
    ):
        raise InvalidInput("activity_types must be a non-empty list of names")
    if key == "activity_statuses":
        try:
            parsed = [Status(**s) for s in value]
        except TypeError as exc:
            raise InvalidInput(
                "activity_statuses must be a list of {name, closed, success}"
            ) from exc
        if not any(not s.closed for s in parsed) or not any(s.closed for s in parsed):
            raise InvalidInput("activity_statuses needs at least one open and one closing status")
