"""/api/unmatched: inputs understood but with no card to go to (administrators), and
attaching one to a card with every effect it would have had there."""

from typing import Annotated

from fastapi import APIRouter, Query

from crm_core.models import InboundStatus
from ingest import inbound_admin, processing
from ingest.http.deps import ADMIN, Ctx
from ingest.http.schemas.inbound import AttachIn, InboundListOut, InboundOut
from ingest.registry import REGISTRY

router = APIRouter(prefix="/api")


@router.get("/unmatched", dependencies=ADMIN)
def list_unmatched(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> InboundListOut:
    """Inputs understood but with no card to go to (e.g. a call from an unknown number)."""
    items = inbound_admin.list_items(ctx.sessions, InboundStatus.UNMATCHED.value, limit)
    return InboundListOut(items=[InboundOut.model_validate(i) for i in items])


@router.post("/unmatched/{item_id}/attach", dependencies=ADMIN)
def attach(item_id: int, body: AttachIn, ctx: Ctx) -> InboundOut:
    """Put an unmatched input on a card, with every effect it would have had there."""
    with ctx.writing() as session:
        item = processing.attach(
            session, item_id, body.card_id, REGISTRY.attachable(), ctx.settings, ctx.clock()
        )
        return InboundOut.model_validate(item)
