"""API shapes of a card's history: its entries (each type's own fields inline) and notes
(`ingest.http.history`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from crm_core.models import HistoryEntry
from ingest.wire import NOT_BLANK, StrictIn


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


class NoteIn(StrictIn):
    text: str = Field(min_length=1, max_length=20_000, pattern=NOT_BLANK)
