"""Activity use cases (seeds 003, 004): create, edit, close, reopen, delete, bulk, and
comments (the activity view's query is `crm_core.activity_filters`). Each runs inside the
caller's transaction and keeps counters, focus moments, history and unread marks in step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core import company, counters, focus, unread
from crm_core.errors import InvalidInput, NotFound, get_or_not_found
from crm_core.models import Activity, Card, Comment, Contact, HistoryEntry, User


@contextmanager
def tracked(session: Session, activity: Activity, now: datetime) -> Iterator[Activity]:
    """Change an activity; its counters and focus moment follow whatever changed."""
    before = counters.counted(activity)
    was_open, deadline, responsible = activity.is_open, activity.deadline, activity.responsible_id
    yield activity
    session.flush()
    counters.change(session, before, counters.counted(activity))
    if (activity.is_open, activity.deadline, activity.responsible_id) != (
        was_open,
        deadline,
        responsible,
    ):
        focus.schedule(
            activity,
            focus.lead_minutes(session, activity.responsible_id),
            now,
            new_deadline=activity.deadline != deadline or not was_open,
        )


@dataclass
class ActivityFields:
    """What a user may set on an activity; None leaves a field as it is (on edit)."""

    card_ids: list[int] | None = None
    type: str | None = None
    subject: str | None = None
    description: str | None = None
    responsible_id: int | None = None
    deadline: datetime | None = None
    clear_deadline: bool = False
    status: str | None = None
    user_ids: list[int] | None = None
    contact_ids: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def create_activity(
    session: Session, fields: ActivityFields, now: datetime, incoming: bool = False
) -> Activity:
    if not fields.card_ids:
        raise InvalidInput("an activity needs card_id or card_ids")
    if fields.type is None or fields.responsible_id is None:
        raise InvalidInput("an activity needs a type and a responsible_id")
    cards = _cards(session, fields.card_ids)
    _user(session, fields.responsible_id)
    if not incoming:  # incoming events keep their channel's type whatever the list says
        company.check_type(session, fields.type)
    status = company.status(session, fields.status or company.first_open_status(session))
    if status.closed:
        raise InvalidInput(f"a new activity cannot start as {status.name!r}")
    activity = Activity(
        card_id=cards[0].id,
        type=fields.type,
        incoming=incoming,
        is_open=True,
        status=status.name,
        responsible_id=fields.responsible_id,
        card_responsible_id=cards[0].responsible_id,
        deadline=None if fields.clear_deadline else fields.deadline,
        subject=(fields.subject or "")[:500],
        description=fields.description or "",
        created_at=now,
    )
    activity.cards = cards
    activity.users = [_user(session, uid) for uid in fields.user_ids or []]
    activity.contacts = [_contact(session, cid) for cid in fields.contact_ids or []]
    session.add(activity)
    session.flush()
    counters.change(session, None, counters.counted(activity))
    focus.schedule(activity, focus.lead_minutes(session, activity.responsible_id), now)
    return activity


def get_activity(session: Session, activity_id: int, *, lock: bool = False) -> Activity:
    """The activity; `lock` (every write path) holds its row for the transaction and reloads
    it, so two concurrent closes cannot both count it down."""
    if not lock:
        return get_or_not_found(session, Activity, activity_id, "activity")
    found = session.scalar(
        select(Activity)
        .where(Activity.id == activity_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if found is None:
        raise NotFound(f"activity {activity_id} does not exist")
    return found


def edit_activity(
    session: Session, activity: Activity, fields: ActivityFields, by: int | None, now: datetime
) -> Activity:
    closing = None
    if fields.status is not None:
        target = company.status(session, fields.status)
        if target.closed and activity.is_open:
            closing = target.name  # after the other fields are applied
        elif not target.closed and not activity.is_open:
            reopen_activity(session, activity, by, now)
    with tracked(session, activity, now):
        if fields.card_ids is not None:
            cards = _cards(session, fields.card_ids)
            activity.cards = cards
            activity.card_id = cards[0].id
            activity.card_responsible_id = cards[0].responsible_id
        if fields.type is not None:
            company.check_type(session, fields.type)
            activity.type = fields.type
        if fields.subject is not None:
            activity.subject = fields.subject[:500]
        if fields.description is not None:
            activity.description = fields.description
        if fields.responsible_id is not None:
            _user(session, fields.responsible_id)
            activity.responsible_id = fields.responsible_id
        if fields.clear_deadline:
            activity.deadline = None
        elif fields.deadline is not None:
            activity.deadline = fields.deadline
        if fields.status is not None and closing is None:
            activity.status = fields.status
        if fields.user_ids is not None:
            activity.users = [_user(session, uid) for uid in fields.user_ids]
        if fields.contact_ids is not None:
            activity.contacts = [_contact(session, cid) for cid in fields.contact_ids]
    if closing is not None:
        close_activity(session, activity, closing, None, by, now)
    return activity


def close_activity(
    session: Session,
    activity: Activity,
    status_name: str | None,
    success: bool | None,
    by: int | None,
    now: datetime,
) -> Activity:
    """Close (complete) the activity and write a "closed task" entry in each card's history."""
    if not activity.is_open:
        return activity
    status = company.status(session, status_name or "done")
    if not status.closed:
        raise InvalidInput(f"{status.name!r} does not close an activity")
    outcome = status.success if success is None else success
    with tracked(session, activity, now):
        activity.is_open = False
        activity.status = status.name
        activity.success = outcome
        activity.closed_at = now
        activity.closed_by_id = by
    _history(session, activity, "task_closed", by, now, {"status": status.name, "success": outcome})
    return activity


def reopen_activity(
    session: Session, activity: Activity, by: int | None, now: datetime
) -> Activity:
    """Back to the open activities (and the counters), recorded in history."""
    if activity.is_open:
        return activity
    with tracked(session, activity, now):
        activity.is_open = True
        activity.status = company.first_open_status(session)
        activity.success = None
        activity.closed_at = None
        activity.closed_by_id = None
    _history(session, activity, "task_reopened", by, now, {})
    return activity


def delete_activity(session: Session, activity: Activity, now: datetime) -> None:
    with tracked(session, activity, now):
        activity.is_open = False  # leaves the counters before the row goes
    session.delete(activity)


def _history(
    session: Session,
    activity: Activity,
    kind: str,
    by: int | None,
    now: datetime,
    extra: dict[str, Any],
) -> None:
    by_name = session.scalar(select(User.name).where(User.id == by)) if by else None
    for card in activity.cards:
        session.add(
            HistoryEntry(
                card_id=card.id,
                type=kind,
                occurred_at=now,
                logged_at=now,
                logged_by_id=by,
                data={
                    "activity_id": activity.id,
                    "activity_type": activity.type,
                    "subject": activity.subject,
                    "by": {"id": by, "name": by_name},
                    **extra,
                },
            )
        )


# --- bulk actions ---------------------------------------------------------------------

BULK_ACTIONS = ("delete", "edit", "assign", "done", "not_done")


def bulk(
    session: Session,
    ids: list[int],
    action: str,
    fields: ActivityFields,
    by: int | None,
    now: datetime,
) -> int:
    """Apply one action to many activities in one transaction; all or nothing."""
    if action not in BULK_ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(BULK_ACTIONS)}")
    activities = [get_activity(session, i, lock=True) for i in sorted(set(ids))]
    for activity in activities:
        if action == "delete":
            delete_activity(session, activity, now)
        elif action == "edit":
            edit_activity(session, activity, fields, by, now)
        elif action == "assign":
            if fields.responsible_id is None:
                raise InvalidInput("assign needs responsible_id")
            edit_activity(
                session, activity, ActivityFields(responsible_id=fields.responsible_id), by, now
            )
        elif action == "done":
            close_activity(session, activity, fields.status or "done", None, by, now)
        else:
            reopen_activity(session, activity, by, now)
    return len(activities)


# --- comments -------------------------------------------------------------------------


def add_comment(
    session: Session,
    card_id: int,
    author_id: int,
    text: str,
    now: datetime,
    activity_id: int | None = None,
) -> Comment:
    """A comment; by anyone but the card's responsible it focuses the card and marks it unread.

    On an activity, by anyone but its responsible, it is also an incoming activity for that
    responsible (seed 000: "comment in a task").
    """
    card = session.scalar(select(Card).where(Card.id == card_id).with_for_update())
    if card is None:
        raise NotFound(f"card {card_id} does not exist")
    author = _user(session, author_id)
    if not text.strip():
        raise InvalidInput("a comment needs text")
    activity = None
    if activity_id is not None:
        activity = get_activity(session, activity_id, lock=True)
        if card.id not in {c.id for c in activity.cards}:
            raise InvalidInput(f"activity {activity_id} is not on card {card_id}")
    comment = Comment(
        card_id=card.id, activity_id=activity_id, author_id=author.id, text=text, created_at=now
    )
    session.add(comment)
    session.flush()
    if activity is not None and author.id != activity.responsible_id:
        create_activity(
            session,
            ActivityFields(
                card_ids=[card.id],
                type="comment",
                subject=f"Comment by {author.name} on: {activity.subject}"[:500],
                responsible_id=activity.responsible_id,
                description=text,
            ),
            now,
            incoming=True,
        )
    if author.id != card.responsible_id:
        focus.focus_card(card, f"comment by {author.name}", now)
        unread.mark_unread(session, card.id, card.responsible_id, now)
    return comment


def list_comments(session: Session, card_id: int) -> list[Comment]:
    return list(
        session.scalars(
            select(Comment).where(Comment.card_id == card_id).order_by(Comment.id.desc())
        )
    )


# --- helpers --------------------------------------------------------------------------


def _cards(session: Session, card_ids: list[int]) -> list[Card]:
    return [get_or_not_found(session, Card, i, "card") for i in dict.fromkeys(card_ids)]


def _user(session: Session, user_id: int) -> User:
    return get_or_not_found(session, User, user_id, "user")


def _contact(session: Session, contact_id: int) -> Contact:
    return get_or_not_found(session, Contact, contact_id, "contact")


def card_activities_moved(session: Session, card: Card, now: datetime) -> None:
    """The card's responsible changed: its activities count for the new one (item mode)."""
    for activity in session.scalars(
        select(Activity).where(Activity.card_id == card.id).with_for_update()
    ):
        with tracked(session, activity, now):
            activity.card_responsible_id = card.responsible_id


def incoming_event(
    session: Session,
    card: Card,
    activity_type: str,
    subject: str,
    history_id: int,
    focus_reason: str,
    now: datetime,
) -> Activity:
    """What every incoming event does (seeds 000, 001): incoming activity, counter, unread,
    focus."""
    activity = create_activity(
        session,
        ActivityFields(
            card_ids=[card.id],
            type=activity_type,
            subject=subject,
            responsible_id=card.responsible_id,
        ),
        now,
        incoming=True,
    )
    activity.history_entry_id = history_id
    unread.mark_unread(session, card.id, card.responsible_id, now)
    card.last_activity_at = now
    focus.focus_card(card, focus_reason, now)
    return activity
