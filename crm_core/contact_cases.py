"""Contacts found (or made) by e-mail address or phone number, and linked to cards: used by
every recorded input (mail, call, chat, payment) and by card creation."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from crm_core.errors import InvalidInput
from crm_core.models import CardContact, Contact, ContactEmail, ContactPhone


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
