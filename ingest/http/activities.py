"""/api/activities: create, list, read, edit, delete, close and reopen activities, and bulk
actions on many. An activity is shown only as the actor may see it (`activities_out`)."""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core import activities, activity_filters, history, permissions
from crm_core.activities import ActivityFields
from crm_core.activity_filters import ActivityFilter
from crm_core.models import Activity, Card
from crm_core.permissions import Actor
from ingest.http.deps import Ctx, Who
from ingest.http.schemas.activities import (
    ActivityIn,
    ActivityListOut,
    ActivityOut,
    ActivityPatch,
    BulkIn,
    BulkOut,
    CloseIn,
)
from ingest.wire import DbId, Instant

router = APIRouter(prefix="/api")


@router.post("/activities", status_code=201)
def create_activity(body: ActivityIn, who: Who, ctx: Ctx) -> ActivityOut:
    """An activity on one or several cards; needs the right to edit each of them, to
    hand it to its responsible (as a card: the add level) and to see its contacts."""
    with ctx.writing() as session:
        cards = [permissions.card_for(session, who, i, "edit") for i in body.all_card_ids()]
        permissions.check_hand_over(session, who, cards, body.responsible_id)
        _check_contacts(session, who, body.contact_ids, [])
        activity = activities.create_activity(
            session,
            ActivityFields(
                card_ids=body.all_card_ids(),
                type=body.type,
                subject=body.subject,
                description=body.description,
                responsible_id=body.responsible_id,
                deadline=body.deadline,
                status=body.status,
                user_ids=body.user_ids,
                contact_ids=body.contact_ids,
            ),
            ctx.clock(),
        )
        [shown] = activities_out(session, who, [activity])
        return shown


@router.get("/activities")
def list_activities(
    who: Who,
    ctx: Ctx,
    responsible_id: DbId | None = None,
    status: str | None = None,
    type: str | None = None,
    card_id: DbId | None = None,
    is_open: bool | None = None,
    deadline_from: Instant | None = None,
    deadline_to: Instant | None = None,
    subordinates_of: Annotated[
        DbId | None, Query(description="open activities of this user's subordinates")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ActivityListOut:
    """Filtered activities on cards the actor may read, ordered like the Kanban (focus),
    then by deadline."""
    with ctx.reading() as session:
        found = activity_filters.list_activities(
            session,
            ActivityFilter(
                responsible_id=responsible_id,
                status=status,
                type=type,
                card_id=card_id,
                is_open=is_open,
                deadline_from=deadline_from,
                deadline_to=deadline_to,
                subordinates_of=subordinates_of,
                limit=limit,
                visible=permissions.visible_activities(session, who),
            ),
        )
        return ActivityListOut(items=activities_out(session, who, found))


@router.get("/activities/{activity_id:int}")
def get_activity(activity_id: int, who: Who, ctx: Ctx) -> ActivityOut:
    with ctx.reading() as session:
        [shown] = activities_out(session, who, [activity_for(session, who, activity_id, "read")])
        return shown


@router.patch("/activities/{activity_id:int}")
def edit_activity(
    activity_id: int,
    body: ActivityPatch,
    who: Who,
    ctx: Ctx,
) -> ActivityOut:
    with ctx.writing() as session:
        found = activity_for(session, who, activity_id, "edit")
        cards = [permissions.card_for(session, who, i, "edit") for i in body.card_ids or []]
        _check_change(session, who, found, _fields(body), cards)
        if history.reopens(session, found, body.status):
            history.check_reopen(session, who, found)
        edited = activities.edit_activity(session, found, _fields(body), who.user_id, ctx.clock())
        [shown] = activities_out(session, who, [edited])
        return shown


@router.delete("/activities/{activity_id:int}", status_code=204)
def delete_activity(activity_id: int, who: Who, ctx: Ctx) -> Response:
    with ctx.writing() as session:
        activities.delete_activity(
            session, activity_for(session, who, activity_id, "edit"), ctx.clock()
        )
    return Response(status_code=204)


@router.post("/activities/{activity_id:int}/close")
def close_activity(activity_id: int, body: CloseIn, who: Who, ctx: Ctx) -> ActivityOut:
    """Complete it (who may edit its cards, or its responsible); each of its cards'
    history gets a "task_closed" entry."""
    with ctx.writing() as session:
        closed = activities.close_activity(
            session,
            activity_for(session, who, activity_id, "close"),
            body.status,
            body.success,
            who.user_id,
            ctx.clock(),
        )
        [shown] = activities_out(session, who, [closed])
        return shown


@router.post("/activities/{activity_id:int}/reopen")
def reopen_activity(activity_id: int, who: Who, ctx: Ctx) -> ActivityOut:
    """Back to the open activities, as the history settings allow; recorded in history."""
    with ctx.writing() as session:
        found = activity_for(session, who, activity_id, "edit")
        history.check_reopen(session, who, found)
        reopened = activities.reopen_activity(session, found, who.user_id, ctx.clock())
        [shown] = activities_out(session, who, [reopened])
        return shown


@router.post("/activities/bulk")
def bulk(body: BulkIn, who: Who, ctx: Ctx) -> BulkOut:
    """One action on many activities, all or nothing: every id is checked (404 for one
    the actor may not read, 403 for one they may not edit, or not close for `done`, or
    not hand to the new responsible) before anything changes."""
    fields = _fields(body.changes) if body.changes else ActivityFields()
    fields.responsible_id = body.responsible_id or fields.responsible_id
    fields.status = body.status or fields.status
    # Only these two change the responsible or the contacts (activities.bulk).
    changes = fields if body.action in ("assign", "edit") else ActivityFields()
    if body.action == "assign":
        changes = ActivityFields(responsible_id=fields.responsible_id)
    with ctx.writing() as session:
        cards = [permissions.card_for(session, who, i, "edit") for i in changes.card_ids or []]
        for activity_id in sorted(set(body.ids)):
            found = activity_for(session, who, activity_id, _BULK_NEEDS.get(body.action, "edit"))
            if body.action == "not_done" or history.reopens(session, found, fields.status):
                history.check_reopen(session, who, found)
            _check_change(session, who, found, changes, cards)
        changed = activities.bulk(session, body.ids, body.action, fields, who.user_id, ctx.clock())
    return BulkOut(changed=changed)


def activity_for(session: Session, who: Actor, activity_id: int, action: str) -> Activity:
    """The activity, if the actor may do `action` with it (404 or 403 otherwise)."""
    found = activities.get_activity(session, activity_id, lock=action != "read")
    return permissions.activity_for(session, who, found, action)


def activities_out(session: Session, who: Actor, found: list[Activity]) -> list[ActivityOut]:
    """Activities as the actor may see them, wherever one is output: it names its cards
    (`card_ids`, and its main card `card_id`, else null) only when they may read them (ids
    are not confirmed); its responsible may see one on cards they may not read."""
    out = [ActivityOut.of(a) for a in found]
    if who.admin:
        return out
    ids = {card_id for a in out for card_id in [*a.card_ids, a.card_id] if card_id is not None}
    readable = set(
        session.scalars(select(Card.id).where(Card.id.in_(ids), permissions.readable(session, who)))
    )
    for a in out:
        a.card_ids = [card_id for card_id in a.card_ids if card_id in readable]
        if a.card_id not in readable:
            a.card_id = None
    return out


# What each bulk action needs on every activity it is given (others: edit).
_BULK_NEEDS = {"done": "close"}


def _check_change(
    session: Session, who: Actor, found: Activity, fields: ActivityFields, cards: list[Card]
) -> None:
    """An edit of an activity (single or bulk) onto `cards` (its new cards, which the actor
    may edit; none: it stays on its own): the right to hand it to a new responsible, and to
    see the contacts it adds."""
    if fields.responsible_id is not None and fields.responsible_id != found.responsible_id:
        permissions.check_hand_over(session, who, cards or list(found.cards), fields.responsible_id)
    if fields.contact_ids is not None:
        _check_contacts(session, who, fields.contact_ids, [c.id for c in found.contacts])


def _check_contacts(session: Session, who: Actor, ids: list[int], linked: list[int]) -> None:
    """Contacts an activity newly names follow the contact rule (`check_contact`)."""
    for contact_id in dict.fromkeys(ids):
        if contact_id not in linked:
            permissions.check_contact(session, who, contact_id, str(contact_id))


def _fields(patch: ActivityPatch) -> ActivityFields:
    return ActivityFields(
        card_ids=patch.card_ids,
        type=patch.type,
        subject=patch.subject,
        description=patch.description,
        responsible_id=patch.responsible_id,
        deadline=patch.deadline,
        clear_deadline="deadline" in patch.model_fields_set and patch.deadline is None,
        status=patch.status,
        user_ids=patch.user_ids,
        contact_ids=patch.contact_ids,
    )
