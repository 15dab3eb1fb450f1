"""API shapes of activities (tasks, calls, meetings...) and of comments on cards and
activities (`ingest.http.activities`, `ingest.http.comments`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_core.models import Activity
from ingest.wire import NOT_BLANK, DbId, Instant, StrictIn


class ActivityIn(StrictIn):
    # As the schema states it (`crm_core.activities` checks it): a card, by one or the other.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["card_id"], "properties": {"card_id": {"type": "integer"}}},
                {
                    "required": ["card_ids"],
                    "properties": {"card_ids": {"type": "array", "minItems": 1}},
                },
            ]
        }
    )

    card_id: DbId | None = None
    card_ids: list[DbId] | None = Field(
        None, description="several cards: the first is the main one"
    )
    type: str = Field(description="a name from the company's activity types")
    subject: str = Field("", max_length=500)
    description: str = ""
    responsible_id: DbId
    deadline: Instant | None = Field(None, description="ISO 8601 with offset, or null")
    status: str | None = None
    user_ids: list[DbId] = Field([], description="additional users")
    contact_ids: list[DbId] = Field([])

    def all_card_ids(self) -> list[int]:
        return ([self.card_id] if self.card_id is not None else []) + (self.card_ids or [])


class ActivityPatch(StrictIn):
    """Fields to change; absent ones stay. `deadline: null` removes the deadline."""

    card_ids: list[DbId] | None = Field(None, min_length=1, description="the first is the main one")
    type: str | None = None
    subject: str | None = Field(None, max_length=500)
    description: str | None = None
    responsible_id: DbId | None = None
    deadline: Instant | None = None
    status: str | None = None
    user_ids: list[DbId] | None = None
    contact_ids: list[DbId] | None = None


class CloseIn(StrictIn):
    status: str | None = Field(None, description="a closing status; default done")
    success: bool | None = Field(None, description="overrides the status's own success")


class BulkIn(StrictIn):
    ids: list[DbId] = Field(min_length=1, max_length=1000)
    action: Literal["delete", "edit", "assign", "done", "not_done"]
    responsible_id: DbId | None = Field(None, description="for assign")
    status: str | None = Field(None, description="for done: which closing status")
    changes: ActivityPatch | None = Field(None, description="for edit")


class BulkOut(BaseModel):
    changed: int


class ActivityOut(BaseModel):
    id: int
    card_id: int | None = Field(
        description="the main card; null for a reader who may not read it (its responsible "
        "sees an activity on cards they may not read)"
    )
    card_ids: list[int] = Field(description="every card it concerns that the reader may read")
    type: str
    incoming: bool
    is_open: bool
    status: str
    success: bool | None
    responsible_id: int
    user_ids: list[int]
    contact_ids: list[int]
    deadline: datetime | None
    subject: str
    description: str
    created_at: datetime
    closed_at: datetime | None
    closed_by_id: int | None
    next_focus_at: datetime | None

    @classmethod
    def of(cls, a: Activity) -> ActivityOut:
        return cls(
            id=a.id,
            card_id=a.card_id,
            card_ids=[c.id for c in a.cards],
            type=a.type,
            incoming=a.incoming,
            is_open=a.is_open,
            status=a.status,
            success=a.success,
            responsible_id=a.responsible_id,
            user_ids=[u.id for u in a.users],
            contact_ids=[c.id for c in a.contacts],
            deadline=a.deadline,
            subject=a.subject,
            description=a.description,
            created_at=a.created_at,
            closed_at=a.closed_at,
            closed_by_id=a.closed_by_id,
            next_focus_at=a.next_focus_at,
        )


class ActivityListOut(BaseModel):
    items: list[ActivityOut]


class CommentIn(StrictIn):
    text: str = Field(min_length=1, max_length=20_000, pattern=NOT_BLANK)
    author_id: DbId | None = Field(None, description="default: the acting user")
    activity_id: DbId | None = None


class CommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    card_id: int
    activity_id: int | None
    author_id: int
    text: str
    created_at: datetime


class CommentListOut(BaseModel):
    items: list[CommentOut]
