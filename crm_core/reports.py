"""Activity reports (seed 004): counts of activities by type, status and responsible over a
period (by creation), on the cards the reader may read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from crm_core.models import Activity, Card, User


@dataclass(frozen=True)
class Row:
    type: str
    status: str
    responsible_id: int
    responsible: str
    count: int


def activity_counts(
    session: Session, since: datetime, until: datetime, visible: ColumnElement[bool]
) -> list[Row]:
    rows = session.execute(
        select(Activity.type, Activity.status, User.id, User.name, func.count())
        .join(Card, Card.id == Activity.card_id)
        .join(User, User.id == Activity.responsible_id)
        .where(Activity.created_at >= since, Activity.created_at < until, visible)
        .group_by(Activity.type, Activity.status, User.id, User.name)
        .order_by(Activity.type, Activity.status, User.id)
    )
    return [Row(*row) for row in rows]
