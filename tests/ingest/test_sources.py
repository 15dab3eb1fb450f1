"""Webhook sources as the hooks find them (`ingest.sources.SourceBook`): read once per cache
period, a revocation through the same app at once, one through another process within the
period; the kinds a hook takes are checked on every request."""

from __future__ import annotations

from typing import Any

import pytest

from crm_core.db import unit_of_work
from crm_core.errors import NotFound
from crm_core.models import utcnow
from ingest import sources
from ingest.provider import ActiveSource
from ingest.registry import REGISTRY
from ingest.runtime import Runtime


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new_source(runtime: Runtime, kind: str = "calllog") -> int:
    with unit_of_work(runtime.sessions) as session:
        source, _secret = sources.register(
            session, runtime.sealer, REGISTRY.provider(kind), "phones", {}
        )
        return source.id


def revoke_elsewhere(runtime: Runtime, source_id: int) -> None:
    """As another HTTP process would: straight in the database, this book not told."""
    with unit_of_work(runtime.sessions) as session:
        sources.revoke(session, source_id, utcnow())


def test_a_source_revoked_by_another_process_is_refused_after_the_cache_period(
    runtime: Runtime,
) -> None:
    ticks = Ticks()
    book = sources.SourceBook(
        runtime.sessions, runtime.sealer, ttl=5, kinds=REGISTRY.providers, clock=ticks
    )
    source_id = new_source(runtime)
    found = book.active(source_id, ("calllog",))
    assert found.kind == "calllog" and found.secrets["secret"]
    revoke_elsewhere(runtime, source_id)
    # Within the period the book still has it; after it, the hook is refused
    ticks.now += 4.9
    assert book.active(source_id, ("calllog",)).id == source_id
    ticks.now += 0.2
    with pytest.raises(NotFound, match=f"no active source {source_id} for this hook"):
        book.active(source_id, ("calllog",))


def test_a_revocation_through_the_book_and_a_period_of_0_count_at_once(
    runtime: Runtime,
) -> None:
    ticks = Ticks()
    book = sources.SourceBook(
        runtime.sessions, runtime.sealer, ttl=5, kinds=REGISTRY.providers, clock=ticks
    )
    uncached = sources.SourceBook(
        runtime.sessions, runtime.sealer, ttl=0, kinds=REGISTRY.providers, clock=ticks
    )
    source_id = new_source(runtime)
    book.active(source_id, ("calllog",))
    uncached.active(source_id, ("calllog",))
    revoke_elsewhere(runtime, source_id)
    with pytest.raises(NotFound):
        uncached.active(source_id, ("calllog",))
    book.forget(source_id)  # what the app's DELETE /api/sources/{id} does
    with pytest.raises(NotFound):
        book.active(source_id, ("calllog",))


def test_a_cached_source_is_still_refused_to_a_hook_of_another_kind(runtime: Runtime) -> None:
    book = sources.SourceBook(
        runtime.sessions, runtime.sealer, ttl=5, kinds=REGISTRY.providers, clock=Ticks()
    )
    source_id = new_source(runtime, "widget")
    assert book.active(source_id, ("widget", "whatsapp")).kind == "widget"
    with pytest.raises(NotFound, match=f"no active source {source_id} for this hook"):
        book.active(source_id, ("calllog", "twilio_voice"))
    with pytest.raises(NotFound):
        book.active(2**40, ("calllog",))  # an id no database integer holds


def test_a_revocation_while_a_hook_reads_the_source_is_not_undone_by_that_read(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = sources.SourceBook(
        runtime.sessions, runtime.sealer, ttl=5, kinds=REGISTRY.providers, clock=Ticks()
    )
    source_id = new_source(runtime)
    read = sources.active

    def revoked_meanwhile(*args: Any) -> ActiveSource:
        found = read(*args)  # the hook's read sees the source still live...
        revoke_elsewhere(runtime, source_id)  # ...and the app's DELETE commits and forgets
        book.forget(source_id)
        return found

    monkeypatch.setattr(sources, "active", revoked_meanwhile)
    assert book.active(source_id, ("calllog",)).id == source_id  # that hook raced it
    monkeypatch.setattr(sources, "active", read)
    # The next hook is refused: the racing read was not kept
    with pytest.raises(NotFound):
        book.active(source_id, ("calllog",))
