"""/api/mailboxes: the IMAP mailboxes to read (administrators): register one (its password
or token is never shown again), list, read with the poller's health, revoke."""

from fastapi import APIRouter, Response

from ingest.http.deps import ADMIN, Ctx
from ingest.http.schemas.mailboxes import MailboxIn, MailboxListOut, MailboxOut
from ingest.mailbox import mailboxes

router = APIRouter(prefix="/api")


@router.post("/mailboxes", status_code=201, dependencies=ADMIN)
def create_mailbox(body: MailboxIn, ctx: Ctx) -> MailboxOut:
    """An IMAP mailbox to read; its password or token is never shown again."""
    with ctx.writing() as session:
        mailbox = mailboxes.register(session, ctx.runtime.sealer, **body.model_dump())
        return MailboxOut.model_validate(mailbox)


@router.get("/mailboxes", dependencies=ADMIN)
def list_mailboxes(ctx: Ctx) -> MailboxListOut:
    with ctx.reading() as session:
        found = mailboxes.list_mailboxes(session)
        return MailboxListOut(items=[MailboxOut.model_validate(m) for m in found])


@router.get("/mailboxes/{mailbox_id}", dependencies=ADMIN)
def get_mailbox(mailbox_id: int, ctx: Ctx) -> MailboxOut:
    """The mailbox with its cursor and its poller's last success or error."""
    with ctx.reading() as session:
        return MailboxOut.model_validate(mailboxes.get(session, mailbox_id))


@router.delete("/mailboxes/{mailbox_id}", status_code=204, dependencies=ADMIN)
def revoke_mailbox(mailbox_id: int, ctx: Ctx) -> Response:
    """Stop reading it (within CRM_IMAP_RELOAD_SECONDS)."""
    with ctx.writing() as session:
        mailboxes.revoke(session, mailbox_id, ctx.clock())
    return Response(status_code=204)
