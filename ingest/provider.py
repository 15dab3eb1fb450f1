"""What a channel and a provider are: the contracts every front door and worker reads.

A `Provider` is one sending integration (our call-log JSON, Twilio, WhatsApp, Stripe,
Telegram...): its source settings, how to verify and split a webhook request, how to read one
stored input, and what to answer. A `Channel` is one stream of stored inputs (email, call,
chat, payment): one worker actor, and how an input is prepared and placed on a card.
`ingest.registry` lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from crm_core.models import InboundItem
from ingest.settings import Settings


@dataclass(frozen=True)
class Medium:
    """A kind of history entry an input becomes, as a user reads and filters it: `type` is
    the entry's (and its activity's) type, `filter` the history filter that shows it."""

    type: str
    label: str  # "WhatsApp": the entry's label on the page
    noun: str  # "WhatsApp message": what the incoming activity is called
    filter: str  # the history filter's name ("calls" for "call")
    filter_label: str  # the filter's label on the page
    activity: bool = True  # also an activity type (a bounce is history only)


@dataclass(frozen=True)
class HookRequest:
    """What a hook needs of an HTTP request, whatever the web framework."""

    source_id: int
    headers: Mapping[str, str]  # case-insensitive, as the web framework gives them
    path_and_query: str
    body: bytes


@dataclass(frozen=True)
class ActiveSource:
    """A live source as a hook needs it: its public settings and unsealed secrets."""

    id: int
    kind: str
    settings: dict[str, Any]
    secrets: dict[str, str]

    def region(self, default: str) -> str:
        """The region its phone numbers are read in."""
        return str(self.settings.get("default_region") or default)


@dataclass(frozen=True)
class StoredSource:
    """The source of a stored input, as a worker reads it again (no secrets)."""

    id: int
    kind: str
    settings: dict[str, Any]
    region: str


class HookRejection(BaseModel):
    index: int
    call_id: str | None = None
    message_id: str | None = None
    error: str


class HookAccepted(BaseModel):
    accepted: int = Field(
        description="calls or messages stored (a retry of a stored one counts again)"
    )
    ids: list[int] = Field(description="inbound item of each accepted input, in order")
    rejected: list[HookRejection] = Field(default_factory=list)
    ignored: str | None = Field(None, description="why nothing was stored, when so")


@dataclass(frozen=True)
class OneInput:
    """One input of a request that passed validation: its dedupe key and the bytes to store
    (the whole body, or one element of a batch)."""

    dedupe_key: str
    raw: bytes


@dataclass
class Split:
    """A verified request cut into inputs: those to store, the bad ones (named), and why
    nothing is stored when the request carries nothing for us (a progress report)."""

    inputs: list[OneInput] = field(default_factory=list)
    rejected: list[HookRejection] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HookAnswer:
    """What the provider is answered: its status code, and a body of its media type (None:
    the `HookAccepted` as JSON)."""

    status_code: int = 202
    body: bytes | None = None
    media_type: str = "application/json"


class Provider(Protocol):
    """One sending integration. Everything it does is a pure function of the source and the
    bytes: the hook calls `verify` then `split` (nothing is read before the signature
    passes); the worker calls `parse` on each stored input and gives the result to its
    channel's `place`."""

    @property
    def kind(self) -> str:
        """The source kind (`POST /api/sources` `kind`), unique in the registry."""

    @property
    def channel(self) -> str:
        """The channel its inputs are processed by (`call`, `chat`, `payment`)."""

    @property
    def settings_model(self) -> type[BaseModel]:
        """The source's settings as `POST /api/sources` takes them (with `kind` and `name`)."""

    @property
    def secret_settings(self) -> tuple[str, ...]:
        """The settings sealed and never shown again."""

    @property
    def generated_secret(self) -> str | None:
        """The secret setting we make (returned once), or None when the provider holds it."""

    @property
    def media(self) -> tuple[Medium, ...]:
        """The history entries its inputs become."""

    @property
    def hook_doc(self) -> str:
        """For the hook's OpenAPI: how its requests are shaped and signed (one paragraph)."""

    @property
    def body_docs(self) -> Mapping[str, Mapping[str, Any]]:
        """For the hook's OpenAPI: media type -> OpenAPI media type object (schema,
        examples) of its request bodies."""

    def verify(self, source: ActiveSource, request: HookRequest, now: datetime) -> None:
        """Raise `BadSignature` unless the request is signed by the source's secret."""

    def split(
        self, source: ActiveSource, request: HookRequest, now: datetime, region: str
    ) -> Split:
        """The inputs of a verified request; RejectedInput when none is readable."""

    def parse(self, source: StoredSource, raw: bytes, received_at: datetime) -> Any:
        """One stored input as its channel places it (a Call, a chat Message or Status, a
        PaymentEvent); RejectedInput naming what is wrong."""

    def answer(self, accepted: HookAccepted) -> HookAnswer:
        """What the provider expects back once the inputs are stored."""


@runtime_checkable
class Handshake(Protocol):
    """A provider that confirms a webhook URL with a GET first (Meta's `hub.challenge`)."""

    def handshake(self, source: ActiveSource, query: Mapping[str, str]) -> str:
        """The text to answer; Forbidden or InvalidInput otherwise."""


@dataclass(frozen=True)
class Outcome:
    """Where a placed input ended: on a card (processed), waiting for a person (`unmatched`,
    with why), or held as a possible loop (`held`, with why)."""

    card_id: int | None
    unmatched: str | None = None
    held: str | None = None
    note: str | None = None  # said on the processed item


class Channel(Protocol):
    """One stream of stored inputs, processed by one worker actor through
    `ingest.processing`: `prepare` reads the stored input outside any transaction (parsing
    a big mail holds no lock), `annotate` keeps what identifies it on its item, and `place`
    puts it on a card inside the one transaction that also finishes the item."""

    @property
    def name(self) -> str:
        """The item's `channel`, and the actor `process_<name>`."""

    @property
    def media(self) -> tuple[Medium, ...]:
        """History entries of its own (beyond its providers')."""

    def prepare(self, session: Session, item: InboundItem, settings: Settings) -> Any:
        """The input read from the stored bytes; RejectedInput when it cannot be."""

    def annotate(self, item: InboundItem, prepared: Any) -> None:
        """Keep on the item what identifies the input (kept whatever the outcome)."""

    def place(
        self,
        session: Session,
        item: InboundItem,
        prepared: Any,
        now: datetime,
        card_id: int | None,
    ) -> Outcome:
        """Put it on its card (`card_id` when a person chose it): RejectedInput or a
        CoreError refuse it, and undo what it wrote."""
