"""A card's documents over /api: list, upload (the body is the file), download, delete (as
the history settings allow)."""

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Body, Query, Request, Response

from crm_core import email_cases, history, permissions
from ingest.http.deps import Ctx, Who
from ingest.http.schemas.documents import DocumentListOut, DocumentOut
from ingest.wire import NOT_BLANK

router = APIRouter(prefix="/api")


@router.get("/cards/{card_id}/documents")
def list_documents(card_id: int, who: Who, ctx: Ctx) -> DocumentListOut:
    """The card's files (inline images of mails are not listed)."""
    with ctx.reading() as session:
        permissions.card_for(session, who, card_id)
        found = email_cases.list_documents(session, card_id)
        return DocumentListOut(items=[DocumentOut.model_validate(d) for d in found])


@router.post("/cards/{card_id}/documents", status_code=201)
def upload_document(
    card_id: int,
    who: Who,
    name: Annotated[
        str,
        Query(min_length=1, max_length=255, pattern=NOT_BLANK, description="file name"),
    ],
    content: Annotated[bytes, Body(media_type="application/octet-stream", min_length=1)],
    request: Request,
    ctx: Ctx,
) -> DocumentOut:
    """Upload a file to the card (the body is the file; its Content-Type its type)."""
    media_type = request.headers.get("content-type", "application/octet-stream")
    with ctx.writing() as session:
        card = permissions.card_for(session, who, card_id, "edit")
        document = history.upload_document(
            session, card, name, media_type, content, who.user_id, ctx.clock()
        )
        return DocumentOut.model_validate(document)


@router.get("/documents/{document_id}/content", response_class=Response)
def document_content(document_id: int, who: Who, ctx: Ctx) -> Response:
    with ctx.reading() as session:
        history.readable_document(session, who, document_id)
        document, content = email_cases.document_content(session, document_id)
    # RFC 6266/5987: the file's own name, whatever its script.
    disposition = f"attachment; filename*=UTF-8''{quote(document.file_name)}"
    return Response(
        content,
        media_type=history.served_media_type(document.media_type),
        headers={"Content-Disposition": disposition},
    )


@router.delete("/documents/{document_id}", status_code=204)
def delete_document(document_id: int, who: Who, ctx: Ctx) -> Response:
    """Delete it for good, as the history settings allow; history records who and when."""
    with ctx.writing() as session:
        history.delete_document(session, who, document_id, ctx.clock())
    return Response(status_code=204)
