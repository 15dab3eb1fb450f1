"""API shapes of webhook sources as the API shows them (`ingest.http.sources`); what a
source is registered with is `ingest.http.sources.SourceIn` (from the registry)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class SourceOut(BaseModel):
    id: int
    kind: str
    name: str
    hook_url: str
    settings: dict[str, Any]
    created_at: datetime
    revoked_at: datetime | None


class SourceCreatedOut(SourceOut):
    secret: str | None = Field(
        description="the signing secret, shown only in this answer (null when the provider "
        "holds the secret, e.g. Twilio's auth token)"
    )


class SourceListOut(BaseModel):
    items: list[SourceOut]
