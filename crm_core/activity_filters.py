"""The activity view's query (seed 003 filters), ordered by focus like the Kanban: read
by the JSON API; the writes live in `crm_core.activities`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from crm_core import counters
from crm_core.models import Activity, Card


@dataclass
class ActivityFilter:
    responsible_id: int | None = None
    status: str | None = None
    type: str | None = None
    card_id: int | None = None
    is_open: bool | None = None
    deadline_from: datetime | None = None
    deadline_to: datetime | None = None
    # "All activities in progress" of this supervisor's subordinates (seed 003).
    subordinates_of: int | None = None
    limit: int = 100
    # Only activities on cards this condition lets through (the reader's rights).
    visible: ColumnElement[bool] | None = None


def list_activities(session: Session, f: ActivityFilter) -> list[Activity]:
    query: Select[Activity] = select(Activity).join(Card, Card.id == Activity.card_id)
    if f.responsible_id is not None:
        query = query.where(Activity.responsible_id == f.responsible_id)
    if f.status is not None:
        query = query.where(Activity.status == f.status)
    if f.type is not None:
        query = query.where(Activity.type == f.type)
    if f.card_id is not None:
        query = query.where(Activity.cards.any(Card.id == f.card_id))
    if f.is_open is not None:
        query = query.where(Activity.is_open == f.is_open)
    if f.deadline_from is not None:
        query = query.where(Activity.deadline >= f.deadline_from)
    if f.deadline_to is not None:
        query = query.where(Activity.deadline <= f.deadline_to)
    if f.subordinates_of is not None:
        team = counters.subordinates(session, f.subordinates_of)
        query = query.where(Activity.responsible_id.in_(team), Activity.is_open)
    if f.visible is not None:
        query = query.where(f.visible)
    # The activity view orders by focus like the Kanban, then by deadline.
    query = query.order_by(
        Card.focus_rank.desc(), Activity.deadline.is_(None), Activity.deadline, Activity.id
    )
    return list(session.scalars(query.limit(f.limit)))
