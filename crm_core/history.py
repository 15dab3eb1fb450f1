"""A card's history (seed 002, SPEC "History"): the filtered timeline, free notes ("new
history"), status and field changes recorded with old and new value, uploaded documents,
and the administrator's settings on who may reopen a closed task or delete a document.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core import company, permissions
from crm_core.errors import Forbidden, InvalidInput, NotFound
from crm_core.models import Activity, Blob, Card, Document, HistoryEntry, User

# The CRM's own history filters (seed 002): name, label, the entry types it shows. The
# channels' filters (e-mail, calls, chat...) come from the layer that runs the channels
# (`ingest.registry`), which gives `card_history` the whole map.
OWN_FILTERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("tasks", "Closed tasks", ("task_closed", "task_reopened")),
    ("status", "Status changes", ("status_change",)),
    ("fields", "Field changes", ("field_change",)),
    ("documents", "Documents", ("document", "document_deleted")),
    ("notes", "Notes", ("note",)),
)
FILTERS: Mapping[str, tuple[str, ...]] = {name: types for name, _label, types in OWN_FILTERS}
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
# A document's media type is sent back as the Content-Type header of its content: RFC 9110
# §8.3.1 `type "/" subtype *( OWS ";" OWS parameter )`, each name a token (§5.6.2), each
# value a token or a quoted-string (§5.6.4), ASCII only (RFC 6838 §4.2). What does not
# parse is no media type (a header that cannot be sent, or could smuggle another).
_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_MEDIA_TYPE = re.compile(rf"{_NAME}/{_NAME}(?:[ \t]*;[ \t]*(?:{_NAME}=(?:{_NAME}|{_QUOTED}))?)*")
MEDIA_TYPE_MAX = 255  # the column's size
OCTET_STREAM = "application/octet-stream"


def media_type(value: str) -> str | None:
    """The media type with its surrounding spaces removed, or None when it is not one (or
    is longer than the column: cut, it could end inside a quoted value)."""
    value = value.strip(" \t")
    if len(value) > MEDIA_TYPE_MAX or not _MEDIA_TYPE.fullmatch(value):
        return None
    return value


def served_media_type(stored: str) -> str:
    """The Content-Type to serve a document with: its stored type, or application/
    octet-stream for one stored before types were checked (never a 500)."""
    return media_type(stored) or OCTET_STREAM


def card_history(
    session: Session,
    card_id: int,
    kinds: list[str],
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
    filters: Mapping[str, tuple[str, ...]] = FILTERS,
) -> list[HistoryEntry]:
    """Newest first; `kinds` are names of `filters` (empty: everything), `since`/`until` a
    period."""
    unknown = [k for k in kinds if k not in filters]
    if unknown:
        raise InvalidInput(f"type: unknown {unknown[0]!r}; one of {', '.join(filters)}")
    query = select(HistoryEntry).where(HistoryEntry.card_id == card_id)
    if kinds:
        query = query.where(HistoryEntry.type.in_([t for k in kinds for t in filters[k]]))
    if since is not None:
        query = query.where(HistoryEntry.occurred_at >= since)
    if until is not None:
        query = query.where(HistoryEntry.occurred_at < until)
    order = (HistoryEntry.occurred_at.desc(), HistoryEntry.id.desc())
    return list(session.scalars(query.order_by(*order).limit(limit)))


def _who(session: Session, user_id: int | None) -> dict[str, Any]:
    name = session.scalar(select(User.name).where(User.id == user_id)) if user_id else None
    return {"id": user_id, "name": name}


def _entry(
    session: Session, card: Card, kind: str, by: int | None, now: datetime, data: dict[str, Any]
) -> HistoryEntry:
    entry = HistoryEntry(
        card_id=card.id,
        type=kind,
        occurred_at=now,
        logged_at=now,
        logged_by_id=by,
        data={**data, "by": _who(session, by)},
    )
    session.add(entry)
    session.flush()
    return entry


def add_note(
    session: Session, card: Card, text: str, by: int | None, now: datetime
) -> HistoryEntry:
    """A "new history" entry: something done with the customer, without a task."""
    if not text.strip():
        raise InvalidInput("text: a note needs some text")
    return _entry(session, card, "note", by, now, {"text": text})


def record_changes(
    session: Session, card: Card, before: dict[str, Any], by: int | None, now: datetime
) -> None:
    """One entry per changed field: the stage as a status change, the rest as field changes."""
    for name, old in before.items():
        new = getattr(card, name)
        if new == old:
            continue
        kind = "status_change" if name == "stage" else "field_change"
        _entry(session, card, kind, by, now, {"field": name, "old": old, "new": new})


def upload_document(
    session: Session,
    card: Card,
    file_name: str,
    given_type: str,
    content: bytes,
    by: int | None,
    now: datetime,
) -> Document:
    """A file uploaded to the card: a document, and an entry in its history. `given_type`
    is the request's Content-Type ("" when none: application/octet-stream)."""
    if not file_name.strip() or len(file_name) > 255:
        raise InvalidInput("name: a file name of 1 to 255 characters")
    media = media_type(given_type) if given_type.strip() else OCTET_STREAM
    if media is None:
        raise InvalidInput(
            f"Content-Type: {given_type[:100]!r} is not a media type: type/subtype "
            "(RFC 9110 tokens) with optional ;name=value parameters, ASCII, at most "
            f"{MEDIA_TYPE_MAX} characters"
        )
    if len(content) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(f"body: a document is at most {MAX_DOCUMENT_BYTES} bytes")
    digest = hashlib.sha256(content).hexdigest()
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, size=len(content), content=content))
        session.flush()
    entry = _entry(
        session,
        card,
        "document",
        by,
        now,
        {"file_name": file_name, "media_type": media, "size": len(content)},
    )
    document = Document(
        card_id=card.id,
        history_entry_id=entry.id,
        file_name=file_name,
        media_type=media,
        size=len(content),
        sha256=digest,
        created_at=now,
    )
    session.add(document)
    session.flush()
    entry.data = {**entry.data, "document_id": document.id}
    return document


def allowed_by_setting(
    session: Session,
    actor: permissions.Actor,
    card: Card,
    setting: str,
    also_responsible: int | None = None,
) -> bool:
    """The history settings: who may reopen a closed task / delete a document of this card
    ("responsible": the card's responsible, or `also_responsible`, the task's own)."""
    who = company.get(session, setting)
    if who == "nobody":
        return False
    if actor.admin:
        return True
    if not permissions.may(session, actor, card, "edit"):
        return False
    if who == "editors":
        return True
    if who == "responsible":
        return actor.user_id in (card.responsible_id, also_responsible)
    return False


def reopens(session: Session, activity: Activity, status: str | None) -> bool:
    """Whether setting `status` on the activity reopens it (a closed one, an open status)."""
    return (
        not activity.is_open and status is not None and not company.status(session, status).closed
    )


def check_reopen(session: Session, actor: permissions.Actor, activity: Activity) -> None:
    """Reopening, by `/reopen`, by an edit to an open status or in bulk: as the setting says."""
    for card in activity.cards:
        if not allowed_by_setting(
            session, actor, card, "reopen_tasks", also_responsible=activity.responsible_id
        ):
            raise Forbidden(
                f"the history settings do not let you reopen tasks of card {card.id} "
                f"(reopen_tasks: {company.get(session, 'reopen_tasks')})"
            )


def readable_document(session: Session, actor: permissions.Actor, document_id: int) -> Card:
    """The card of a document the actor may read; the same NotFound for a document that
    does not exist and one on a card they may not read."""
    document = session.get(Document, document_id)
    card = session.get(Card, document.card_id) if document is not None else None
    if card is None or not permissions.may(session, actor, card, "read"):
        raise NotFound(f"document {document_id} does not exist")
    return card


def delete_document(
    session: Session, actor: permissions.Actor, document_id: int, now: datetime
) -> HistoryEntry:
    """Delete a document for good, its content too unless another document shares it; the
    card's history records who deleted which file and when."""
    card = readable_document(session, actor, document_id)
    document = session.get(Document, document_id)
    assert document is not None
    if not allowed_by_setting(session, actor, card, "delete_documents"):
        raise Forbidden(
            "the history settings do not let you delete documents "
            f"(delete_documents: {company.get(session, 'delete_documents')})"
        )
    mail = (
        session.get(HistoryEntry, document.history_entry_id) if document.history_entry_id else None
    )
    if mail is not None and isinstance(mail.data.get("attachments"), list):
        mail.data = {
            **mail.data,
            "attachments": [
                {**a, "deleted": True} if a.get("document_id") == document.id else a
                for a in mail.data["attachments"]
            ],
        }
    digest, name = document.sha256, document.file_name
    session.delete(document)
    session.flush()
    shared = session.scalar(
        select(func.count()).select_from(Document).where(Document.sha256 == digest)
    )
    if not shared:
        blob = session.get(Blob, digest)
        if blob is not None:
            session.delete(blob)
    return _entry(
        session,
        card,
        "document_deleted",
        actor.user_id,
        now,
        {"document_id": document_id, "file_name": name},
    )
