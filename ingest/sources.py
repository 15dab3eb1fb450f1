"""Webhook sources: register an integration, seal its secrets, find it when a hook arrives.

`POST /api/sources` lands here; each provider of `ingest.registry` says which of its
settings are secret. Our own signing secrets are generated here and returned once; every
secret is stored sealed (`ingest.sealing`), never shown again.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import read_only
from crm_core.errors import NotFound
from crm_core.models import Source
from ingest.provider import ActiveSource, Provider
from ingest.sealing import Sealer


def register(
    session: Session, sealer: Sealer, provider: Provider, name: str, given: dict[str, Any]
) -> tuple[Source, str | None]:
    """Store a new source of `provider`; returns it and the secret to show once (None when
    the provider holds the secret)."""
    hidden = {key: str(given.pop(key)) for key in provider.secret_settings if key in given}
    shown = None
    if provider.generated_secret is not None:
        shown = hidden[provider.generated_secret] = secrets.token_urlsafe(32)
    source = Source(
        kind=provider.kind,
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
    session: Session, sealer: Sealer, source_id: int, kinds: Collection[str]
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
        kinds: Collection[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`kinds`: every source kind a hook may find (the registry's)."""
        self._kinds = frozenset(kinds)
        self._sessions = sessions
        self._sealer = sealer
        self._ttl = ttl
        self._clock = clock
        self._known: dict[int, tuple[float, ActiveSource]] = {}
        # Bumped by `forget`: a read that began before it must not be kept after it.
        self._forgotten: dict[int, int] = {}
        self._lock = threading.Lock()

    def active(self, source_id: int, kinds: Collection[str]) -> ActiveSource:
        """As `active`: NotFound, with the same message, for any source not live of `kinds`."""
        now = self._clock()
        with self._lock:
            known = self._known.get(source_id)
            generation = self._forgotten.get(source_id, 0)
        if known is not None and known[0] > now:
            source = known[1]
        else:
            with read_only(self._sessions) as session:
                source = active(session, self._sealer, source_id, self._kinds)
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
