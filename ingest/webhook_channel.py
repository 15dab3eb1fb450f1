"""A channel fed by webhook providers (calls, chat, payments): its hook path, and how a
stored input is read again (by the provider of its source) and placed on a card.

`ingest.registry` gives each one its providers; `ingest.processing` runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from crm_core.models import InboundItem, Source
from ingest.errors import RejectedInput
from ingest.provider import Medium, Outcome, Provider, StoredSource
from ingest.settings import Settings

# (session, item, what its provider read, now, card chosen by a person or None) -> Outcome;
# raises RejectedInput (the input is at fault) or a CoreError (the CRM refuses it).
PlaceInput = Callable[[Session, InboundItem, Any, datetime, int | None], Outcome]


@dataclass(frozen=True)
class WebhookChannel:
    name: str  # the inbound items' channel and the actor's name (`process_<name>`)
    hook: str  # the URL segment: POST /hooks/<hook>/<source id>
    place_input: PlaceInput
    providers: Mapping[str, Provider] = field(default_factory=dict)  # by source kind
    media: tuple[Medium, ...] = ()

    def with_providers(self, providers: Mapping[str, Provider]) -> WebhookChannel:
        return replace(self, providers=providers)

    def prepare(self, session: Session, item: InboundItem, settings: Settings) -> Any:
        source = stored_source(session, item, settings.default_region)
        provider = self.providers.get(source.kind)
        if provider is None:
            raise RejectedInput(f"its source kind {source.kind} is not one of this channel's")
        return provider.parse(source, item.raw, item.received_at)

    def annotate(self, item: InboundItem, prepared: Any) -> None:
        return None

    def place(
        self, session: Session, item: InboundItem, prepared: Any, now: datetime, card_id: int | None
    ) -> Outcome:
        return self.place_input(session, item, prepared, now, card_id)


def stored_source(session: Session, item: InboundItem, default_region: str) -> StoredSource:
    """The source a stored input came from, and the region its numbers are read in."""
    source = session.get(Source, item.meta.get("source_id"))
    if source is None:
        raise RejectedInput("its source no longer exists")
    region = source.settings.get("default_region") or default_region
    return StoredSource(source.id, source.kind, dict(source.settings), region)
