"""/api/cards and /api/kanban: create, read (marking it read for its responsible), edit,
delete a card; its unread mark; one Kanban column. Every change of stage or field is
recorded in the card's history."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from crm_core import card_cases, history, permissions, unread
from ingest.http.deps import Ctx, Who
from ingest.http.schemas.cards import (
    CardIn,
    CardOut,
    CardPatch,
    EntityTypeName,
    KanbanCardOut,
    KanbanOut,
)

router = APIRouter(prefix="/api")


@router.post("/cards", status_code=201)
def create_card(body: CardIn, who: Who, ctx: Ctx) -> CardOut:
    with ctx.writing() as session:
        permissions.check_add(session, who, body.entity_type, body.responsible_id)
        card = card_cases.create_card(
            session,
            title=body.title,
            entity_type=body.entity_type,
            stage=body.stage,
            responsible_id=body.responsible_id,
            contact_emails=[str(e) for e in body.contact_emails],
            contact_phones=body.contact_phones,
            default_region=ctx.settings.default_region,
            actor=who,  # an existing contact only as `permissions.check_contact` allows
        )
        return CardOut.of(card, unread=False)


@router.get("/cards/{card_id}")
def get_card(card_id: int, who: Who, ctx: Ctx) -> CardOut:
    """The card; opened by its responsible, it is no longer unread for them."""
    with ctx.reading() as session:
        card = permissions.card_for(session, who, card_id)
        viewer = who.user_id if who.user_id is not None else card.responsible_id
        since = unread.unread_since(session, card.id, viewer)
        shown = CardOut.of(card, since is not None)
        shown.unread_since = since
    if shown.unread and who.user_id == shown.responsible_id:
        with ctx.writing() as session:
            unread.mark_read(session, card_id, who.user_id)
        shown.unread = False  # the responsible is looking at it now
    return shown


@router.patch("/cards/{card_id}")
def edit_card(card_id: int, body: CardPatch, who: Who, ctx: Ctx) -> CardOut:
    """Edit; each change of stage or field is recorded in the card's history."""
    with ctx.writing() as session:
        card = permissions.card_for(session, who, card_id, "edit", lock=True)
        if body.responsible_id is not None and body.responsible_id != card.responsible_id:
            # Handing a card over is adding it for the new responsible.
            permissions.check_add(session, who, card.entity_type, body.responsible_id)
        before = {f: getattr(card, f) for f in ("title", "stage", "responsible_id", "outcome")}
        card = card_cases.edit_card(
            session,
            card_id,
            ctx.clock(),
            title=body.title,
            stage=body.stage,
            responsible_id=body.responsible_id,
            outcome=body.outcome if body.outcome != "open" else None,
            reopen=body.outcome == "open",
        )
        history.record_changes(session, card, before, who.user_id, ctx.clock())
        return CardOut.of(card, unread.is_unread(session, card.id, card.responsible_id))


@router.delete("/cards/{card_id}", status_code=204)
def delete_card(card_id: int, who: Who, ctx: Ctx) -> Response:
    """Delete the card with its history, activities and documents."""
    with ctx.writing() as session:
        card = permissions.card_for(session, who, card_id, "delete", lock=True)
        card_cases.delete_card(session, card, ctx.clock())
    return Response(status_code=204)


@router.post("/cards/{card_id}/read", status_code=204)
def mark_read(card_id: int, who: Who, ctx: Ctx) -> Response:
    with ctx.writing() as session:
        card = permissions.card_for(session, who, card_id)
        unread.mark_read(session, card.id, who.user_id or card.responsible_id)
    return Response(status_code=204)


@router.post("/cards/{card_id}/unread", status_code=204)
def mark_unread(card_id: int, who: Who, ctx: Ctx) -> Response:
    with ctx.writing() as session:
        card = permissions.card_for(session, who, card_id)
        unread.mark_unread(session, card.id, who.user_id or card.responsible_id, ctx.clock())
    return Response(status_code=204)


@router.get("/kanban")
def kanban(
    who: Who,
    ctx: Ctx,
    entity_type: EntityTypeName = "deal",
    stage: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> KanbanOut:
    """One column's cards the actor may read, latest focus first, each with why it is on
    top."""
    with ctx.reading() as session:
        cards = card_cases.kanban(
            session, entity_type, stage, limit, permissions.readable(session, who)
        )
    return KanbanOut(cards=[KanbanCardOut.model_validate(c, from_attributes=True) for c in cards])
