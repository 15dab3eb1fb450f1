"""The inbound store over /api: raw inputs and their status, reprocessing, legal holds
(administrators), and a user's own refused, held or failed inputs (/api/me/inbound)."""

from typing import Annotated

from fastapi import APIRouter, Query

from crm_core import card_cases
from crm_core.errors import InvalidInput, NotFound
from crm_core.models import InboundStatus
from ingest import inbound_admin, processing
from ingest.http import my_inbound
from ingest.http.deps import ADMIN, Ctx, Who
from ingest.http.schemas.errors import ErrorOut
from ingest.http.schemas.inbound import InboundListOut, InboundOut, LegalHoldIn, MyInboundListOut

router = APIRouter(prefix="/api")


@router.get("/inbound/{item_id}", dependencies=ADMIN)
def get_inbound(item_id: int, ctx: Ctx) -> InboundOut:
    item = processing.load(ctx.sessions, item_id)
    if item is None:
        raise NotFound(f"inbound item {item_id} does not exist")
    return InboundOut.model_validate(item)


@router.get("/inbound", dependencies=ADMIN)
def list_inbound(
    ctx: Ctx,
    status_filter: Annotated[InboundStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> InboundListOut:
    status = status_filter.value if status_filter else None
    items = inbound_admin.list_items(ctx.sessions, status, limit)
    return InboundListOut(items=[InboundOut.model_validate(i) for i in items])


@router.get(
    "/me/inbound",
    response_model=MyInboundListOut,
    summary="My own refused, held or failed inputs",
    responses={401: {"model": ErrorOut, "description": "missing or wrong token"}},
)
def list_my_inbound(
    who: Who,
    ctx: Ctx,
    status_filter: Annotated[
        my_inbound.OwnStatus | None,
        Query(
            alias="status",
            description="only these; without it, all three and the "
            "processed inputs that carry a notice",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> MyInboundListOut:
    """The signed-in user's own mail that processing refused, held or failed after the
    SMTP 250, and mail put on its card with a notice, newest first, each with its reason
    in plain words (any user; only their own: sent from their address). The admin token
    acting for no user gets 422: it has no address (name a user with X-Acting-User)."""
    if who.user_id is None:
        raise InvalidInput("the admin token is no user's: name one with X-Acting-User")
    with ctx.reading() as session:
        found = my_inbound.own_inputs(session, who.user_id, status_filter, limit, ctx.clock())
    return MyInboundListOut(items=found)


@router.post("/inbound/{item_id}/reprocess", dependencies=ADMIN, status_code=202)
def reprocess_inbound(item_id: int, ctx: Ctx) -> InboundOut:
    """A failed, rejected or held input goes through processing again, from the start
    (a held one is released from the loop limit); 409 for any other status."""
    item = inbound_admin.reprocess(ctx.sessions, item_id, ctx.clock())
    ctx.enqueue(item.channel, [item.id])
    return InboundOut.model_validate(item)


@router.put("/inbound/{item_id}/legal-hold", dependencies=ADMIN)
def hold_inbound(item_id: int, body: LegalHoldIn, ctx: Ctx) -> InboundOut:
    """Keep this raw input past the retention period (or let it go again)."""
    return InboundOut.model_validate(inbound_admin.set_legal_hold(ctx.sessions, item_id, body.hold))


@router.put("/cards/{card_id}/legal-hold", dependencies=ADMIN)
def hold_card(card_id: int, body: LegalHoldIn, ctx: Ctx) -> LegalHoldIn:
    """Keep every raw input that landed on this card past the retention period."""
    with ctx.writing() as session:
        card_cases.set_card_legal_hold(session, card_id, body.hold)
    return body
