"""Focus (seed 001): which card sits at the top of its Kanban column, and why.

A card is focused by moving its focus moment to now. Incoming events and comments focus
at once; an activity's deadline focuses its cards N minutes before and at the deadline,
driven by `fire_due` (the sweeper's clock) from `Activity.next_focus_at`, so it fires
after a restart too. Kanban, list and activity views all order by the focus moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from crm_core.models import Activity, Card, CardUnread, User

INCOMING_EMAIL = "incoming e-mail"
INCOMING_CALL = "incoming call"
MISSED_CALL = "missed call"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def focus_card(card: Card, reason: str, at: datetime) -> None:
    card.focus_at = at
    card.focus_rank = (at - _EPOCH) // timedelta(microseconds=1)
    card.focus_reason = reason[:200]


@dataclass(frozen=True)
class KanbanCard:
    id: int
    title: str
    entity_type: str
    stage: str
    responsible_id: int
    focus_at: datetime | None
    focus_reason: str | None
    unread: bool


def kanban(
    session: Session,
    entity_type: str,
    stage: str | None,
    limit: int,
    visible: ColumnElement[bool] | None = None,
) -> list[KanbanCard]:
    """Cards of one column (or all columns of a type), latest focus first, with the unread
    mark of each card's responsible: one statement, read backwards along ix_cards_kanban_rank."""
    unread = (
        select(CardUnread.card_id)
        .where(CardUnread.card_id == Card.id, CardUnread.user_id == Card.responsible_id)
        .exists()
    )
    query = select(
        Card.id,
        Card.title,
        Card.entity_type,
        Card.stage,
        Card.responsible_id,
        Card.focus_at,
        Card.focus_reason,
        unread.label("unread"),
    ).where(Card.entity_type == entity_type)
    if stage is not None:
        query = query.where(Card.stage == stage)
    if visible is not None:
        query = query.where(visible)
    rows = session.execute(query.order_by(Card.focus_rank.desc(), Card.id.desc()).limit(limit))
    return [KanbanCard(*row) for row in rows]


def schedule(
    activity: Activity, lead_minutes: int, now: datetime, *, new_deadline: bool = True
) -> None:
    """Set the activity's next focus moment: N minutes before the deadline, then the deadline.

    Inside the N-minute window already, the "before" focus is due at once. With the same
    deadline as before (`new_deadline=False`), a moment that already fired is not fired
    again: only one still ahead is moved (a new N, a new responsible).
    """
    deadline = activity.deadline
    if not activity.is_open or deadline is None:
        activity.next_focus_at = None
        return
    if not new_deadline and (activity.next_focus_at is None or activity.next_focus_at >= deadline):
        return  # the "before" moment fired already (and maybe the deadline's too)
    before = deadline - timedelta(minutes=lead_minutes)
    activity.next_focus_at = before if before > now else min(now, deadline)


def fire_due(session: Session, now: datetime, limit: int = 500) -> int:
    """Focus the cards of every activity whose focus moment has come; return how many.

    Rows are locked (skipped if another sweeper holds them) so two sweepers never fire the
    same moment twice. A moment missed while the service was down fires late, once.
    """
    due = list(
        session.scalars(
            select(Activity)
            .where(Activity.is_open, Activity.next_focus_at <= now)
            .order_by(Activity.next_focus_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for activity in due:
        assert activity.deadline is not None and activity.next_focus_at is not None
        if now < activity.deadline:
            minutes = round((activity.deadline - activity.next_focus_at).total_seconds() / 60)
            reason = f"deadline in {minutes} min: {activity.subject}"
            activity.next_focus_at = activity.deadline
        else:
            reason = f"deadline reached: {activity.subject}"
            activity.next_focus_at = None
        for card in activity.cards:
            focus_card(card, reason, now)
    return len(due)


def lead_minutes(session: Session, user_id: int) -> int:
    found = session.scalar(select(User.planned_lead_minutes).where(User.id == user_id))
    return 15 if found is None else found  # N = 0 is a choice, not a missing value
