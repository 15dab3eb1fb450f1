"""Card use cases (create, edit, delete, lock, Kanban, history, archive addresses, legal
hold), each inside the caller's transaction: the JSON API, the CLI and the input pipelines
(which lock the card an input lands on) call these."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, lazyload

from crm_core import activities, counters, focus, permissions
from crm_core.contact_cases import contact_by_email, contact_by_phone
from crm_core.errors import InvalidInput, NotFound, get_or_not_found
from crm_core.models import (
    Activity,
    ArchiveAddress,
    Blob,
    Card,
    CardContact,
    Contact,
    Document,
    EntityType,
    HistoryEntry,
)
from crm_core.phones import normalize_phone
from crm_core.user_cases import get_user


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
