"""API shapes of cards: a card, its edit, its contacts, its archive address and the Kanban
column (`ingest.http.cards`, `ingest.http.archive`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from crm_core.models import Card
from ingest.wire import DbId, EmailAddress, StrictIn

# The kinds of card (`crm_core.models.EntityType`).
EntityTypeName = Literal["deal", "lead", "invoice", "smart_process"]


class CardPatch(StrictIn):
    title: str | None = Field(None, min_length=1, max_length=300)
    stage: str | None = Field(None, min_length=1, max_length=100)
    responsible_id: DbId | None = None
    outcome: Literal["won", "lost", "open"] | None = Field(
        None, description="won or lost closes the card; open reopens it"
    )


class CardIn(StrictIn):
    title: str = Field(min_length=1, max_length=300)
    entity_type: EntityTypeName
    stage: str = Field(min_length=1, max_length=100, description="pipeline stage = Kanban column")
    responsible_id: DbId
    contact_emails: list[EmailAddress] = Field([])
    contact_phones: list[str] = Field([])


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
    outcome: str | None = Field(description="won or lost; null while the card is open")
    unread: bool
    unread_since: datetime | None = Field(
        None,
        description="GET by a viewer it was unread for: since when (history logged from then "
        "on was new to them), even though opening it just marked it read",
    )
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
            outcome=card.outcome,
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


class KanbanCardOut(BaseModel):
    id: int
    title: str
    entity_type: str
    stage: str
    responsible_id: int
    unread: bool
    focus_at: datetime | None
    focus_reason: str | None


class KanbanOut(BaseModel):
    cards: list[KanbanCardOut]
