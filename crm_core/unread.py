"""The unread mark (seed 001 "Unread"): set by incoming events and others' comments,
cleared when the responsible opens the card or marks it read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from crm_core.models import CardUnread


def mark_unread(session: Session, card_id: int, user_id: int, now: datetime) -> None:
    if session.get(CardUnread, (card_id, user_id)) is None:
        session.add(CardUnread(card_id=card_id, user_id=user_id, since=now))


def mark_read(session: Session, card_id: int, user_id: int) -> None:
    session.execute(
        delete(CardUnread).where(CardUnread.card_id == card_id, CardUnread.user_id == user_id)
    )


def is_unread(session: Session, card_id: int, user_id: int) -> bool:
    return unread_since(session, card_id, user_id) is not None


def unread_since(session: Session, card_id: int, user_id: int) -> datetime | None:
    """Since when the card is unread for the user (history logged from then on is new to
    them); None if it is read."""
    row = session.get(CardUnread, (card_id, user_id))
    return None if row is None else row.since
