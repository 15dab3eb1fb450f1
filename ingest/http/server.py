"""The HTTP app's server: uvicorn on h11, with a deadline for each request's head (against
slowloris), the calendar feed's secret hidden from the access log, and no signal handling
of its own (the CLI owns SIGINT/SIGTERM). `make_http_server` builds it for an app.
"""

import asyncio
import contextlib
import logging
import math
import re
import socket

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from ingest.http import web


class _HttpServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: the CLI owns SIGINT/SIGTERM for every part."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        web.end_streams(self.app)  # uvicorn waits for open responses: end the event streams
        await super().shutdown(sockets)

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class _HideSecrets(logging.Filter):
    """The access log shows paths, and a calendar feed's path carries its secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            path = str(record.args[2])
            if "token=" in path:
                hidden = re.sub(r"token=[^&]*", "token=...", path)
                record.args = (*record.args[:2], hidden, *record.args[3:])
        return True


class _HeadDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 connection (h11), closed when a request's head (request line and
    headers) has not fully come in within `head_seconds` of the connection's start or of the
    previous answer. uvicorn's own keep-alive timer is no such deadline: it waits only for
    the first byte after an answer, and not at all for a connection's first request, so a
    client sending a header line now and then (slowloris) held its connection forever. A
    head is at most h11's incomplete-event size (16 KiB, else 400): each waiting connection
    costs little memory, and now for a bounded time."""

    head_seconds = 10.0  # set per server by `make_http_server`
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle
        super().data_received(data)
        if self.cycle is not waiting:  # a complete head made a new request cycle
            self._stop_waiting()

    def on_response_complete(self) -> None:
        answered = self.cycle
        super().on_response_complete()
        # Waiting for the next head, unless a pipelined one was already there.
        if self.cycle is answered and not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._stop_waiting()
        self._deadline = self.loop.call_later(self.head_seconds, self._too_slow)

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        # (unless the connection went on with another protocol: an upgrade)
        if self.transport.get_protocol() is self and not self.transport.is_closing():
            self.transport.close()


def make_http_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for `app`: `await server.serve()`, stop with `server.should_exit = True`.
    Its header-read timeout is the app's `state.http_header_timeout_seconds` (set by
    `create_app` from CRM_HTTP_HEADER_TIMEOUT_SECONDS), else 10 s."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _HideSecrets) for f in access.filters):
        access.addFilter(_HideSecrets())
    seconds = float(getattr(app.state, "http_header_timeout_seconds", _HeadDeadline.head_seconds))
    protocol = type("HeadDeadline", (_HeadDeadline,), {"head_seconds": seconds})
    # No log config of uvicorn's own: its lines go through the process's (`ingest.logs`).
    # Always h11 (never httptools, were it installed): the head deadline is built on it. An
    # idle kept-alive connection is closed by the same deadline (uvicorn's own timer, whole
    # seconds, comes no sooner).
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        lifespan="off",
        log_config=None,
        http=protocol,
        timeout_keep_alive=math.ceil(seconds),
    )
    return _HttpServer(config, app)
