"""A card's archive address over /api: issue a new one (the previous one keeps working for
the grace period) or revoke them; mail sent to it lands on the card."""

from datetime import timedelta

from fastapi import APIRouter, Response

from crm_core import card_cases, permissions
from ingest.http.deps import Ctx, Who
from ingest.http.schemas.cards import ArchiveAddressOut
from ingest.mailbox.addresses import encode_archive_address, hash_archive_token, new_archive_token

router = APIRouter(prefix="/api")


@router.post("/cards/{card_id}/archive-address", status_code=201)
def issue_archive_address(card_id: int, who: Who, ctx: Ctx) -> ArchiveAddressOut:
    """A new address for the card (for users who may edit it); a previous one keeps
    working for the grace period."""
    token = new_archive_token()
    with ctx.writing() as session:
        permissions.card_for(session, who, card_id, "edit")
        card_cases.issue_archive_address(
            session,
            card_id,
            hash_archive_token(token),
            timedelta(seconds=ctx.settings.archive_grace_seconds),
            ctx.clock(),
        )
    return ArchiveAddressOut(address=encode_archive_address(token, ctx.settings.archive_domain))


@router.delete("/cards/{card_id}/archive-address", status_code=204)
def revoke_archive_address(card_id: int, who: Who, ctx: Ctx) -> Response:
    with ctx.writing() as session:
        permissions.card_for(session, who, card_id, "edit")
        card_cases.revoke_archive_addresses(session, card_id, ctx.clock())
    return Response(status_code=204)
