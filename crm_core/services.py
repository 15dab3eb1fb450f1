"""Use cases of the CRM core, each run inside one transaction given by the caller.

Workers and the JSON API call these; nothing else writes cards, history, activities,
unread marks, counters or focus.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, lazyload

from crm_core import activities, counters, focus, history, permissions
from crm_core.errors import Conflict, Forbidden, InvalidInput, NotFound, get_or_not_found
from crm_core.models import (
    Activity,
    ArchiveAddress,
    Blob,
    Card,
    CardContact,
    Contact,
    ContactEmail,
    ContactPhone,
    Document,
    EntityType,
    HistoryEntry,
    User,
    UserCounter,
)
from crm_core.phones import normalize_phone

# --- users and cards -----------------------------------------------------------------


def create_user(session: Session, email: str, name: str, timezone: str = "UTC") -> User:
    email = email.strip().lower()
    _check_timezone(timezone)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with e-mail {email} already exists")
    user = User(email=email, name=name, timezone=timezone)
    session.add(user)
    session.flush()
    session.add(UserCounter(user_id=user.id, incoming=0, incoming_items=0))
    return user


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
    session: Session, card_id: int, subject: str, text: str, inbound_id: int, now: datetime
) -> None:
    """A delivery status notification: in the card's history as a bounce, never counted as a
    customer message (no activity, no unread, no focus)."""
    get_card(session, card_id)
    session.add(
        HistoryEntry(
            card_id=card_id,
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


def _check_timezone(timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {timezone!r}") from exc


def timezone_of(session: Session, email: str) -> str | None:
    """The time zone of the user with this address (dates in their forwards are theirs)."""
    return session.scalar(select(User.timezone).where(User.email == email.strip().lower()))


def get_user(session: Session, user_id: int) -> User:
    return get_or_not_found(session, User, user_id, "user")


def list_users(session: Session) -> list[User]:
    """Everyone, by name: the colleagues one hands a card to, or acts for."""
    return list(session.scalars(select(User).order_by(User.name, User.id)))


def create_card(
    session: Session,
    *,
    title: str,
    entity_type: str,
    stage: str,
    responsible_id: int,
    contact_emails: list[str],
    contact_phones: list[str],
    default_region: str,
    actor: permissions.Actor | None = None,
) -> Card:
    """A new card with its contacts (found by e-mail or phone, made when new). With `actor`
    (every API call), an existing contact is linked only as `permissions.check_contact`
    allows; without, the caller is trusted (the CLI's demo data, benchmarks)."""
    if entity_type not in {e.value for e in EntityType}:
        raise InvalidInput(f"unknown entity type {entity_type!r}")
    get_user(session, responsible_id)
    card = Card(title=title, entity_type=entity_type, stage=stage, responsible_id=responsible_id)
    session.add(card)
    session.flush()
    contacts: dict[int, Contact] = {}
    for address in contact_emails:
        contact = contact_by_email(session, address, create=True)
        assert contact is not None
        contacts[contact.id] = contact
        if actor is not None:
            permissions.check_contact(session, actor, contact.id, address.strip().lower())
    for raw in contact_phones:
        number = normalize_phone(raw, default_region)
        contact = contact_by_phone(session, number)
        contacts[contact.id] = contact
        if actor is not None:
            permissions.check_contact(session, actor, contact.id, number)
    for contact_id in contacts:
        session.add(CardContact(card_id=card.id, contact_id=contact_id))
    session.flush()
    session.refresh(card)
    return card


def get_card(session: Session, card_id: int) -> Card:
    return get_or_not_found(session, Card, card_id, "card")


def contact_by_email(
    session: Session, address: str, *, create: bool, name: str = ""
) -> Contact | None:
    address = address.strip().lower()
    if "@" not in address:
        raise InvalidInput(f"not an e-mail address: {address!r}")
    contact = session.scalar(
        select(Contact).join(ContactEmail).where(ContactEmail.address == address)
    )
    if contact is None and create:
        contact = Contact(name=(name or address)[:300], emails=[ContactEmail(address=address)])
        session.add(contact)
        session.flush()
    return contact


def contact_by_phone(session: Session, number: str, name: str = "") -> Contact:
    """The contact with this E.164 number, made (named `name`, else the number) if none."""
    contact = session.scalar(
        select(Contact)
        .join(ContactPhone)
        .where(ContactPhone.number == number)
        .options(lazyload(Contact.emails), lazyload(Contact.phones))
    )
    if contact is None:
        contact = Contact(name=(name or number)[:300], phones=[ContactPhone(number=number)])
        session.add(contact)
        session.flush()
    return contact


def link_contact(session: Session, card_id: int, contact_id: int) -> None:
    exists = session.get(CardContact, (card_id, contact_id))
    if exists is None:
        session.add(CardContact(card_id=card_id, contact_id=contact_id))


# --- archive addresses ---------------------------------------------------------------


def issue_archive_address(
    session: Session, card_id: int, token_hash: str, grace: timedelta, now: datetime
) -> None:
    """Give the card a new address; its current ones keep working for `grace` only (rotation)."""
    get_card(session, card_id)
    session.execute(
        update(ArchiveAddress)
        .where(
            ArchiveAddress.card_id == card_id,
            ArchiveAddress.revoked_at.is_(None),
            or_(ArchiveAddress.expires_at.is_(None), ArchiveAddress.expires_at > now + grace),
        )
        .values(expires_at=now + grace)
    )
    session.add(ArchiveAddress(card_id=card_id, token_hash=token_hash, created_at=now))


def revoke_archive_addresses(session: Session, card_id: int, now: datetime) -> int:
    get_card(session, card_id)
    result = session.execute(
        update(ArchiveAddress)
        .where(ArchiveAddress.card_id == card_id, ArchiveAddress.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def set_card_legal_hold(session: Session, card_id: int, hold: bool) -> None:
    """While on hold, the raw inputs that landed on the card outlive their retention."""
    get_card(session, card_id).legal_hold = hold


def card_for_archive_token(session: Session, token_hash: str, now: datetime) -> int | None:
    """The card whose live archive address has this token hash, if any."""
    return session.scalar(
        select(ArchiveAddress.card_id).where(
            ArchiveAddress.token_hash == token_hash,
            ArchiveAddress.revoked_at.is_(None),
            or_(ArchiveAddress.expires_at.is_(None), ArchiveAddress.expires_at > now),
        )
    )


def lock_card(session: Session, card_id: int) -> Card:
    """The card, locked until the transaction ends: what is counted or written for it
    meanwhile is serialized with the other inputs of that card. Its contacts load when used
    (not with the lock: two more queries each time otherwise)."""
    card = session.scalar(
        select(Card).where(Card.id == card_id).options(lazyload(Card.contacts)).with_for_update()
    )
    if card is None:
        raise NotFound(f"card {card_id} does not exist")
    return card


# --- incoming e-mail -----------------------------------------------------------------


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


def record_email(
    session: Session, card_id: int, mail: EmailRecord, inbound_id: int | None, now: datetime
) -> Recorded:
    """Put a mail on its card: history, incoming activity, unread, counter, focus.

    Running it again for the same mail finds the history entry and changes nothing.
    """
    card = lock_card(session, card_id)
    logger = session.scalar(select(User).where(User.email == mail.logged_by.lower()))
    if logger is None:
        raise Forbidden(f"sender {mail.logged_by} is not a CRM user")
    # SPEC "Who may archive": a user with edit rights on the card (seed 003).
    logger_actor = permissions.Actor(logger.id, logger.is_admin)
    if not permissions.may(session, logger_actor, card, "edit"):
        raise Forbidden(f"sender {logger.email} may not edit card {card.id}, so not archive to it")
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


# --- unread, history, kanban ---------------------------------------------------------


def card_history(session: Session, card_id: int, limit: int = 200) -> list[HistoryEntry]:
    get_card(session, card_id)
    return list(
        session.scalars(
            select(HistoryEntry)
            .where(HistoryEntry.card_id == card_id)
            .order_by(HistoryEntry.occurred_at.desc(), HistoryEntry.id.desc())
            .limit(limit)
        )
    )


def kanban(
    session: Session,
    entity_type: str,
    stage: str | None,
    limit: int = 50,
    visible: ColumnElement[bool] | None = None,
) -> list[focus.KanbanCard]:
    if entity_type not in {e.value for e in EntityType}:
        raise InvalidInput(f"unknown entity type {entity_type!r}")
    return focus.kanban(session, entity_type, stage, limit, visible)


def delete_card(session: Session, card: Card, now: datetime) -> None:
    """Delete a card with everything on it: its own activities (leaving the counters first),
    its documents and their content when no other document shares it. An activity that
    also concerns other cards stays on them."""
    for activity in session.scalars(
        select(Activity).where(Activity.cards.any(Card.id == card.id)).with_for_update()
    ).all():
        others = [c for c in activity.cards if c.id != card.id]
        if not others:
            activities.delete_activity(session, activity, now)
            continue
        with activities.tracked(session, activity, now):
            activity.cards = others
            activity.card_id = others[0].id
            activity.card_responsible_id = others[0].responsible_id
    digests = set(session.scalars(select(Document.sha256).where(Document.card_id == card.id)))
    counters.invalidate(session, [card.responsible_id])
    session.delete(card)
    session.flush()
    for digest in digests:
        if session.scalar(select(Document.id).where(Document.sha256 == digest).limit(1)) is None:
            blob = session.get(Blob, digest)
            if blob is not None:
                session.delete(blob)


def user_counters(session: Session, user_id: int, now: datetime) -> counters.Counters:
    """The user's counters in the company's current counter mode."""
    found = counters.read_counters(session, user_id, now)
    if found is None:
        raise NotFound(f"user {user_id} does not exist")
    return found


def edit_user(
    session: Session,
    user_id: int,
    now: datetime,
    *,
    planned_lead_minutes: int | None = None,
    timezone: str | None = None,
    manager_id: int | None = None,
    clear_manager: bool = False,
) -> User:
    user = get_user(session, user_id)
    counters.invalidate(session, [user.id])  # their counters and the managers' above them now
    if timezone is not None:
        _check_timezone(timezone)
        user.timezone = timezone
    if clear_manager:
        user.manager_id = None
    elif manager_id is not None:
        get_user(session, manager_id)
        if manager_id == user.id or user.id in _managers_above(session, manager_id):
            raise InvalidInput("a user cannot be managed by themselves or their subordinates")
        user.manager_id = manager_id
    if planned_lead_minutes is not None and planned_lead_minutes != user.planned_lead_minutes:
        if not 0 <= planned_lead_minutes <= 7 * 24 * 60:
            raise InvalidInput("planned_lead_minutes must be between 0 and 10080")
        user.planned_lead_minutes = planned_lead_minutes
        # Their open activities' "N minutes before" focus moments move with N.
        for activity in session.scalars(
            select(Activity).where(
                Activity.responsible_id == user.id,
                Activity.is_open,
                Activity.deadline.is_not(None),
            )
        ):
            focus.schedule(activity, planned_lead_minutes, now, new_deadline=False)
    session.flush()
    counters.invalidate(session, [user.id])  # ...and the managers above them from now on
    return user


def _managers_above(session: Session, user_id: int) -> set[int]:
    seen: set[int] = set()
    current: int | None = user_id
    while current is not None and current not in seen:
        seen.add(current)
        current = session.scalar(select(User.manager_id).where(User.id == current))
    return seen


def edit_card(
    session: Session,
    card_id: int,
    now: datetime,
    *,
    title: str | None = None,
    stage: str | None = None,
    responsible_id: int | None = None,
    outcome: str | None = None,
    reopen: bool = False,
) -> Card:
    """Edit a card; `outcome` (won / lost) closes it: events then go to its contact's other,
    open cards (SPEC "Which card?"); `reopen` clears the outcome."""
    card = session.scalar(select(Card).where(Card.id == card_id).with_for_update())
    if card is None:
        raise NotFound(f"card {card_id} does not exist")
    if title is not None:
        card.title = title
    if stage is not None:
        card.stage = stage
    if reopen:
        card.outcome = None
    elif outcome is not None:
        card.outcome = outcome
    if responsible_id is not None and responsible_id != card.responsible_id:
        get_user(session, responsible_id)
        card.responsible_id = responsible_id
        activities.card_activities_moved(session, card, now)
    return card
