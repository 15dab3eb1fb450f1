"""Incoming e-mail's last step: a parsed mail (`EmailRecord`) or a delivery report put on
its card by `ingest.mailbox.processing`, under the one "who may archive" rule (`archiver`);
and the documents (attachments) it leaves on the card."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core import activities, focus, history, permissions
from crm_core.card_cases import get_card
from crm_core.contact_cases import contact_by_email, link_contact
from crm_core.errors import Forbidden, get_or_not_found
from crm_core.models import Blob, Card, Document, HistoryEntry, User


@dataclass(frozen=True)
class Party:
    name: str
    address: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "address": self.address}


@dataclass(frozen=True)
class FileIn:
    file_name: str
    media_type: str
    content: bytes
    inline: bool = False


@dataclass(frozen=True)
class EmailRecord:
    """A mail to put on a card: the original message, and who logged it."""

    logged_by: str  # address of the CRM user who sent (or forwarded) it to the card
    sender: Party
    occurred_at: datetime
    subject: str
    text: str
    message_id: str = ""
    date_header: str = ""  # the Date header as written ("" if none): part of the identity
    to: list[Party] = field(default_factory=list)
    cc: list[Party] = field(default_factory=list)
    forwarded: bool = False
    note: str = ""  # the forwarder's own words above the forward
    # False when the forwarded original's own date could not be read: `occurred_at` is then
    # the forward's date, and the entry says so.
    date_known: bool = True
    # What the forwarder is told about this mail (their "My forwards" list), not stored on
    # the entry: e.g. a forward whose original sender could not be read.
    notice: str = ""
    html: str = ""  # sanitised
    attachments: list[FileIn] = field(default_factory=list)
    skipped_attachments: list[dict[str, Any]] = field(default_factory=list)

    def dedupe_key(self) -> str:
        """Same Message-ID and same content = the same mail (SPEC), whatever relays added.

        Built only from what the sender wrote (never from our receive time, which differs
        on every delivery of a mail that has no Date)."""
        content = "\x00".join(
            [self.sender.address.lower(), self.subject, self.date_header, self.text]
        )
        digest = hashlib.sha256(content.encode("utf-8", "replace")).hexdigest()
        return f"email:{hashlib.sha256(self.message_id.encode()).hexdigest()[:32]}:{digest}"


@dataclass(frozen=True)
class Recorded:
    history_id: int
    created: bool


def archiver(session: Session, card: Card, address: str) -> User:
    """SPEC "Who may archive" (seed 003), for every mail or report put on a card: the CRM
    user with this address, who must have edit rights on the card; Forbidden otherwise."""
    user = session.scalar(select(User).where(User.email == address.lower()))
    if user is None:
        raise Forbidden(f"sender {address} is not a CRM user")
    if not permissions.may(session, permissions.Actor(user.id, user.is_admin), card, "edit"):
        raise Forbidden(f"sender {user.email} may not edit card {card.id}, so not archive to it")
    return user


def record_email(
    session: Session, card: Card, mail: EmailRecord, inbound_id: int | None, now: datetime
) -> Recorded:
    """Put a mail on its card: history, incoming activity, unread, counter, focus.

    `card` is locked by the caller (`card_cases.lock_card`), which may count under that lock
    first. Running it again for the same mail finds the history entry and changes nothing.
    """
    logger = archiver(session, card, mail.logged_by)
    logger_actor = permissions.Actor(logger.id, logger.is_admin)
    key = mail.dedupe_key()
    existing = session.scalar(
        select(HistoryEntry.id).where(
            HistoryEntry.card_id == card.id, HistoryEntry.dedupe_key == key
        )
    )
    if existing is not None:
        return Recorded(history_id=existing, created=False)

    # The same Message-ID with other content is kept, and flagged (SPEC: never dropped).
    # Keys start "email:<hash of Message-ID>:", so this is a range of the unique index.
    prefix = key[: key.rindex(":") + 1]
    reused_message_id = bool(mail.message_id) and (
        session.scalar(
            select(HistoryEntry.id)
            .where(
                HistoryEntry.card_id == card.id,
                HistoryEntry.dedupe_key >= prefix,
                HistoryEntry.dedupe_key < prefix[:-1] + ";",  # ";" sorts right after ":"
            )
            .limit(1)
        )
        is not None
    )
    entry = HistoryEntry(
        card_id=card.id,
        type="email",
        occurred_at=mail.occurred_at,
        logged_at=now,
        logged_by_id=logger.id,
        inbound_id=inbound_id,
        dedupe_key=key,
        data={
            "forwarded": mail.forwarded,
            "date_known": mail.date_known,
            "message_id": mail.message_id,
            "from": mail.sender.as_dict(),
            "to": [p.as_dict() for p in mail.to],
            "cc": [p.as_dict() for p in mail.cc],
            "subject": mail.subject,
            "text": mail.text,
            "note": mail.note,
            "html": mail.html,
            "logged_by": {"id": logger.id, "name": logger.name, "address": logger.email},
            "message_id_reused": reused_message_id,
            "skipped_attachments": mail.skipped_attachments,
        },
    )
    session.add(entry)
    session.flush()
    entry.data = {**entry.data, "attachments": _store_files(session, card.id, entry.id, mail, now)}
    if mail.sender.address.lower() != logger.email:
        contact = contact_by_email(session, mail.sender.address, create=True, name=mail.sender.name)
        assert contact is not None
        # The mail is the logger's to archive, but the sender becomes a contact of the card
        # only as a user may link one (SPEC "Which card?"): archiving a mail from another
        # department's customer must not pull that customer's next events onto this card.
        if permissions.may_link_contact(session, logger_actor, contact.id):
            link_contact(session, card.id, contact.id)
    activities.incoming_event(
        session, card, "email", mail.subject, entry.id, focus.INCOMING_EMAIL, now
    )
    return Recorded(history_id=entry.id, created=True)


def _store_files(
    session: Session, card_id: int, entry_id: int, mail: EmailRecord, now: datetime
) -> list[dict[str, Any]]:
    """The mail's files as documents of the card; each content stored once per SHA-256."""
    listed = []
    for file in mail.attachments:
        digest = hashlib.sha256(file.content).hexdigest()
        if session.get(Blob, digest) is None:
            session.add(Blob(sha256=digest, size=len(file.content), content=file.content))
            session.flush()
        # A part's type as the mail wrote it may be anything (non-ASCII, a parameter with a
        # line break): kept only when it can be sent back as a Content-Type.
        media = history.media_type(file.media_type) or history.OCTET_STREAM
        document = Document(
            card_id=card_id,
            history_entry_id=entry_id,
            file_name=file.file_name[:255],
            media_type=media,
            size=len(file.content),
            sha256=digest,
            inline=file.inline,
            created_at=now,
        )
        session.add(document)
        session.flush()
        listed.append(
            {
                "document_id": document.id,
                "file_name": document.file_name,
                "media_type": document.media_type,
                "size": document.size,
                "sha256": digest,
                "inline": file.inline,
            }
        )
    return listed


def record_bounce(
    session: Session,
    card: Card,
    logged_by: str,
    subject: str,
    text: str,
    inbound_id: int,
    now: datetime,
) -> None:
    """A delivery status notification: in the card's history as a bounce, never counted as a
    customer message (no activity, no unread, no focus). `logged_by` (its From) must be
    allowed to archive to the card (`archiver`), as for any mail."""
    archiver(session, card, logged_by)
    session.add(
        HistoryEntry(
            card_id=card.id,
            type="bounce",
            occurred_at=now,
            logged_at=now,
            inbound_id=inbound_id,
            dedupe_key=f"bounce:{inbound_id}",
            data={"subject": subject, "text": text},
        )
    )


def list_documents(session: Session, card_id: int) -> list[Document]:
    get_card(session, card_id)
    return list(
        session.scalars(
            select(Document)
            .where(Document.card_id == card_id, Document.inline.is_(False))
            .order_by(Document.id.desc())
        )
    )


def document_content(session: Session, document_id: int) -> tuple[Document, bytes]:
    document = get_or_not_found(session, Document, document_id, "document")
    blob = get_or_not_found(session, Blob, document.sha256, "content of document")
    return document, blob.content
