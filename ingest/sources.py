"""Webhook sources: register an integration, seal its secrets, find it when a hook arrives.

`POST /api/sources` lands here; each kind (`calllog`, `twilio_voice`, the chat kinds
`widget`, `whatsapp`, `twilio`, the payment kinds `stripe`, `payment`) says which of its
settings are secret. Our own signing secrets are generated here and returned once; every
secret is stored sealed (`ingest.sealing`), never shown again.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import read_only
from crm_core.errors import NotFound
from crm_core.models import InboundItem, Source
from ingest.errors import RejectedInput
from ingest.sealing import Sealer

# Per kind: the settings that are secret (sealed, never returned), and whether we make the
# signing secret ourselves (returned once) or the provider holds it.
SECRET_SETTINGS = {
    "calllog": ("secret",),
    "twilio_voice": ("auth_token",),
    "widget": ("secret",),
    "whatsapp": ("app_secret", "verify_token"),
    "twilio": ("auth_token",),
    "stripe": ("signing_secret",),
    "payment": ("secret",),
}
GENERATED_SECRET = {"calllog": "secret", "widget": "secret", "payment": "secret"}
HOOK_PATHS = {
    "calllog": "/hooks/calllog/{id}",
    "twilio_voice": "/hooks/calllog/{id}",
    "widget": "/hooks/chat/{id}",
    "whatsapp": "/hooks/chat/{id}",
    "twilio": "/hooks/chat/{id}",
    "stripe": "/hooks/payments/{id}",
    "payment": "/hooks/payments/{id}",
}


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


def register(
    session: Session, sealer: Sealer, kind: str, name: str, given: dict[str, Any]
) -> tuple[Source, str | None]:
    """Store a new source; returns it and the secret to show once (None if not ours)."""
    hidden = {key: str(given.pop(key)) for key in SECRET_SETTINGS[kind] if key in given}
    shown = None
    if kind in GENERATED_SECRET:
        shown = hidden[GENERATED_SECRET[kind]] = secrets.token_urlsafe(32)
    source = Source(
        kind=kind,
        name=name,
        settings={k: v for k, v in given.items() if v is not None},
        sealed=sealer.seal(hidden),
    )
    session.add(source)
    session.flush()
    return source, shown


def list_sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.id)))


def get(session: Session, source_id: int) -> Source:
    source = session.get(Source, source_id)
    if source is None:
        raise NotFound(f"source {source_id} does not exist")
    return source


def revoke(session: Session, source_id: int, now: datetime) -> None:
    source = get(session, source_id)
    if source.revoked_at is None:
        source.revoked_at = now


def active(
    session: Session, sealer: Sealer, source_id: int, kinds: tuple[str, ...]
) -> ActiveSource:
    """The live source of one of `kinds`; NotFound for any other (unknown, revoked, or a
    source of another kind), with the same message so a caller learns nothing more."""
    # An id no database integer holds (a probe) is simply unknown.
    source = session.get(Source, source_id) if 0 < source_id < 2**31 else None
    if source is None or source.revoked_at is not None or source.kind not in kinds:
        raise NotFound(f"no active source {source_id} for this hook")
    return ActiveSource(source.id, source.kind, dict(source.settings), sealer.unseal(source.sealed))


class SourceBook:
    """The live sources as the hooks of one HTTP app find them: read through a cache kept
    `ttl` seconds, so a burst of hooks costs one database read per source, not one per
    request. A revocation through this book (`forget`) counts at once; one made by another
    process, within `ttl`. Secrets are unsealed when read, once per `ttl`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sealer: Sealer,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._sealer = sealer
        self._ttl = ttl
        self._clock = clock
        self._known: dict[int, tuple[float, ActiveSource]] = {}
        # Bumped by `forget`: a read that began before it must not be kept after it.
        self._forgotten: dict[int, int] = {}
        self._lock = threading.Lock()

    def active(self, source_id: int, kinds: tuple[str, ...]) -> ActiveSource:
        """As `active`: NotFound, with the same message, for any source not live of `kinds`."""
        now = self._clock()
        with self._lock:
            known = self._known.get(source_id)
            generation = self._forgotten.get(source_id, 0)
        if known is not None and known[0] > now:
            source = known[1]
        else:
            with read_only(self._sessions) as session:
                source = active(session, self._sealer, source_id, tuple(SECRET_SETTINGS))
            with self._lock:
                if self._ttl > 0 and self._forgotten.get(source_id, 0) == generation:
                    self._known[source_id] = (now + self._ttl, source)
        if source.kind not in kinds:
            raise NotFound(f"no active source {source_id} for this hook")
        return source

    def forget(self, source_id: int) -> None:
        """Read this source again at its next hook (it was revoked here), including a read
        already under way."""
        with self._lock:
            self._known.pop(source_id, None)
            self._forgotten[source_id] = self._forgotten.get(source_id, 0) + 1


def hook_path(source: Source) -> str:
    return HOOK_PATHS[source.kind].format(id=source.id)


def of_item(session: Session, item: InboundItem, default_region: str) -> tuple[Source, str]:
    """The source a stored input came from, and the region its numbers are read in."""
    source = session.get(Source, item.meta.get("source_id"))
    if source is None:
        raise RejectedInput("its source no longer exists")
    return source, source.settings.get("default_region") or default_region
