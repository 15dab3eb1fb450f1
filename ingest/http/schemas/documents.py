"""API shapes of a card's documents (`ingest.http.documents`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    card_id: int
    history_entry_id: int | None
    file_name: str
    media_type: str
    size: int
    sha256: str
    created_at: datetime


class DocumentListOut(BaseModel):
    items: list[DocumentOut]
