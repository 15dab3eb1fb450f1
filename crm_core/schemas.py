"""Request and response shapes of the JSON API (pydantic), built from the core's models.

The HTTP layer validates with these and serialises through them; the use cases never see
HTTP.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, EmailStr, Field

from crm_core.models import Card, HistoryEntry, InboundItem, User


class UserIn(BaseModel):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    timezone: str = "UTC"


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    timezone: str

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, email=user.email, name=user.name, timezone=user.timezone)


class CardIn(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    entity_type: str = Field(description="deal, lead, invoice or smart_process")
    stage: str = Field(min_length=1, max_length=100, description="pipeline stage = Kanban column")
    responsible_id: int
    contact_emails: list[EmailStr] = []
    contact_phones: list[str] = []


class ContactOut(BaseModel):
    id: int
    name: str
    emails: list[str]
    phones: list[str]


class CardOut(BaseModel):
    id: int
    title: str
    entity_type: str
    stage: str
    responsible_id: int
    unread: bool
    focus_at: datetime | None
    focus_reason: str | None
    contacts: list[ContactOut]

    @classmethod
    def of(cls, card: Card, unread: bool) -> CardOut:
        return cls(
            id=card.id,
            title=card.title,
            entity_type=card.entity_type,
            stage=card.stage,
            responsible_id=card.responsible_id,
            unread=unread,
            focus_at=card.focus_at,
            focus_reason=card.focus_reason,
            contacts=[
                ContactOut(
                    id=c.id,
                    name=c.name,
                    emails=[e.address for e in c.emails],
                    phones=[p.number for p in c.phones],
                )
                for c in card.contacts
            ],
        )


class ArchiveAddressOut(BaseModel):
    address: str


class HistoryItemOut(BaseModel):
    id: int
    type: str
    occurred_at: datetime
    logged_at: datetime
    logged_by_id: int | None
    data: dict[str, Any] = Field(exclude=True)

    @classmethod
    def of(cls, entry: HistoryEntry) -> dict[str, Any]:
        """The entry's common fields with its type's own fields (from, to, subject...) inline."""
        common = cls(
            id=entry.id,
            type=entry.type,
            occurred_at=entry.occurred_at,
            logged_at=entry.logged_at,
            logged_by_id=entry.logged_by_id,
            data=entry.data,
        ).model_dump(mode="json")
        return {**entry.data, **common}


class HistoryOut(BaseModel):
    items: list[dict[str, Any]]


class CountersOut(BaseModel):
    incoming: int
    planned: int
    today: int


class KanbanOut(BaseModel):
    cards: list[CardOut]


class InboundOut(BaseModel):
    id: int
    channel: str
    recipient: str
    status: str
    reason: str | None
    error: str | None
    attempts: int
    card_id: int | None
    received_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, item: InboundItem) -> InboundOut:
        return cls(
            id=item.id,
            channel=item.channel,
            recipient=item.recipient,
            status=item.status,
            reason=item.reason,
            error=item.error,
            attempts=item.attempts,
            card_id=item.card_id,
            received_at=item.received_at,
            finished_at=item.finished_at,
        )


class InboundListOut(BaseModel):
    items: list[InboundOut]
