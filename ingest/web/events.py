"""Live updates for the web page: Server-Sent Events that say "something changed, fetch again".

Inputs are processed by workers that may run in other processes or machines, so the HTTP
process cannot be told; one poller per app reads `crm_core.changes.change_marker` every
CRM_UI_EVENTS_POLL_SECONDS while at least one page listens, and wakes every stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Hashable

from fastapi.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

# Sent at least this often, so proxies keep the stream open and a gone client is noticed.
KEEPALIVE_SECONDS = 15.0
# What a browser's EventSource waits before reconnecting after the stream ended (ms).
RETRY_MS = 2000


def event(name: str, data: str) -> str:
    """One event in the text/event-stream format (HTML Living Standard, "Server-sent events")."""
    return f"event: {name}\ndata: {data}\n\n"


class ChangeFeed:
    """Shared by all streams of one app: one poller, started with the first listener and
    stopped with the last; `close()` ends every stream (server shutdown)."""

    def __init__(self, read_marker: Callable[[], Hashable], interval: float) -> None:
        self._read_marker = read_marker
        self._interval = interval
        self._version = 0
        self._marker: Hashable = None
        self._listeners = 0
        self._poller: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._closed = asyncio.Event()

    @property
    def listeners(self) -> int:
        return self._listeners

    def close(self) -> None:
        """End every stream and the poller, at once (from the server's event loop)."""
        self._closed.set()

    async def stream(self, still_allowed: Callable[[], bool] | None = None) -> AsyncIterator[str]:
        """The events of one page: `change` once at the start (the page fetches what it
        shows: nothing between its first load and this stream is missed), then after each
        change; a comment line as keep-alive; ends on `close()` or when the client goes
        (Starlette cancels the generator), or, checked at each keep-alive, once
        `still_allowed` says no (the token revoked: the page's reconnection then gets 401)."""
        self._listeners += 1
        try:
            if self._poller is None or self._poller.done():
                self._ready.clear()
                self._poller = asyncio.create_task(self._poll())
            await self._until(self._ready, timeout=None)
            seen = self._version
            yield f"retry: {RETRY_MS}\n" + event("change", str(seen))
            while not self._closed.is_set():
                await self._until(self._changed, timeout=KEEPALIVE_SECONDS)
                if self._closed.is_set():
                    break
                if self._version != seen:
                    seen = self._version
                    yield event("change", str(seen))
                else:
                    if still_allowed is not None and not await run_in_threadpool(still_allowed):
                        break
                    yield ": keep-alive\n\n"
        finally:
            self._listeners -= 1

    async def _until(self, wanted: asyncio.Event, timeout: float | None) -> None:
        """Wait for `wanted`, `close()` or the timeout, whichever comes first."""
        waits = [asyncio.ensure_future(wanted.wait()), asyncio.ensure_future(self._closed.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _poll(self) -> None:
        while self._listeners > 0 and not self._closed.is_set():
            try:
                marker = await run_in_threadpool(self._read_marker)
            except Exception:
                # The database is down for a moment: the pages keep what they show, and the
                # next read that works tells them.
                log.warning("web events: could not read the change marker", exc_info=True)
            else:
                if self._ready.is_set() and marker != self._marker:
                    self._version += 1
                    changed, self._changed = self._changed, asyncio.Event()
                    changed.set()
                self._marker = marker
                self._ready.set()
            await self._until(asyncio.Event(), timeout=self._interval)
