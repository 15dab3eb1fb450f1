"""`GET /api/channels`: what the registry (`ingest.registry`) says the page needs to show
the history of any channel: the history filters and the labels of the channels' entries."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ingest.http.deps import Who
from ingest.registry import REGISTRY

router = APIRouter()


class FilterOut(BaseModel):
    name: str  # the `type` query parameter of GET /api/cards/{id}/history
    label: str


class ChannelsOut(BaseModel):
    filters: list[FilterOut]
    types: dict[str, str]  # history entry type -> its label
    sources: list[str]  # the source kinds `POST /api/sources` takes


@router.get("/api/channels")
def channels(who: Who) -> ChannelsOut:
    """The history filters (in the page's order) and the labels of the channels' entries."""
    return ChannelsOut(
        filters=[FilterOut(name=n, label=t) for n, t in REGISTRY.filter_labels().items()],
        types=REGISTRY.type_labels(),
        sources=list(REGISTRY.providers),
    )
