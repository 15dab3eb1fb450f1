"""Comments over /api: on a card (optionally naming one of its activities) and on an
activity; the author is the acting user (an administrator may write for someone else)."""

from fastapi import APIRouter

from crm_core import activities, permissions
from crm_core.errors import Forbidden, InvalidInput
from crm_core.permissions import Actor
from ingest.http.activities import activity_for
from ingest.http.deps import Ctx, Who
from ingest.http.schemas.activities import CommentIn, CommentListOut, CommentOut

router = APIRouter(prefix="/api")


@router.post("/cards/{card_id}/comments", status_code=201)
def add_comment(card_id: int, body: CommentIn, who: Who, ctx: Ctx) -> CommentOut:
    author = _author(body, who)
    with ctx.writing() as session:
        permissions.card_for(session, who, card_id, "edit")
        if body.activity_id is not None:
            found = activities.get_activity(session, body.activity_id)
            permissions.activity_for(session, who, found, "edit")
        comment = activities.add_comment(
            session, card_id, author, body.text, ctx.clock(), activity_id=body.activity_id
        )
        return CommentOut.model_validate(comment)


@router.get("/cards/{card_id}/comments")
def list_comments(card_id: int, who: Who, ctx: Ctx) -> CommentListOut:
    with ctx.reading() as session:
        permissions.card_for(session, who, card_id)
        comments = activities.list_comments(session, card_id)
        return CommentListOut(items=[CommentOut.model_validate(c) for c in comments])


@router.post("/activities/{activity_id:int}/comments", status_code=201)
def comment_activity(activity_id: int, body: CommentIn, who: Who, ctx: Ctx) -> CommentOut:
    author = _author(body, who)
    with ctx.writing() as session:
        found = activity_for(session, who, activity_id, "edit")
        comment = activities.add_comment(
            session, found.card_id, author, body.text, ctx.clock(), activity_id=found.id
        )
        return CommentOut.model_validate(comment)


def _author(body: CommentIn, who: Actor) -> int:
    """The comment's author: the actor (an administrator may write for someone else)."""
    author = body.author_id if body.author_id is not None else who.user_id
    if author is None:
        raise InvalidInput("a comment needs author_id (or X-Acting-User)")
    if author != who.user_id and not who.admin:
        raise Forbidden("you may only comment as yourself")
    return author
