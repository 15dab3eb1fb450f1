"""A card's history over /api: its entries, newest first and filtered, and the notes users
add to it ("new history")."""

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from crm_core import history, permissions
from crm_core.errors import InvalidInput
from ingest.http.deps import Ctx, Who
from ingest.http.schemas.history import HistoryItemOut, HistoryOut, NoteIn
from ingest.registry import REGISTRY
from ingest.wire import Instant

router = APIRouter(prefix="/api")


@router.get("/cards/{card_id}/history")
def card_history(
    card_id: int,
    who: Who,
    ctx: Ctx,
    type: Annotated[
        list[Annotated[str, Field(pattern=f"^({'|'.join(REGISTRY.history_filters())})$")]] | None,
        Query(description=f"filter, repeatable: {', '.join(REGISTRY.history_filters())}"),
    ] = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> HistoryOut:
    """Newest first; filtered by type (closed tasks, e-mail, WhatsApp, SMS, chat, calls,
    status changes, field changes, documents, notes) and period."""
    if any(moment is not None and moment.tzinfo is None for moment in (since, until)):
        raise InvalidInput("since and until need their UTC offset")
    with ctx.reading() as session:
        permissions.card_for(session, who, card_id)
        entries = history.card_history(
            session, card_id, type or [], since, until, limit, REGISTRY.history_filters()
        )
        return HistoryOut(items=[HistoryItemOut.of(e) for e in entries])


@router.post("/cards/{card_id}/notes", status_code=201)
def add_note(card_id: int, body: NoteIn, who: Who, ctx: Ctx) -> dict[str, object]:
    """A "new history" entry: something done with the customer, without a task."""
    with ctx.writing() as session:
        card = permissions.card_for(session, who, card_id, "edit")
        return HistoryItemOut.of(
            history.add_note(session, card, body.text, who.user_id, ctx.clock())
        )
