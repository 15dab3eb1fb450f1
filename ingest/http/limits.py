"""The HTTP door's gate, a pure ASGI middleware around the app: /api credentials are checked
from the headers before a byte of the body is read, and every body is capped (by its
Content-Length, then by the bytes read), so that a refusal (401, 413) costs no memory."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from crm_core.permissions import Actor

# The ASGI shapes (as Starlette spells them).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Where the gate leaves the actor it found, for the route's `authenticated` dependency to
# reuse (no second database look-up).
ACTOR_KEY = "crm.actor"
# A file upload's path: its body is the file, with a cap of its own.
_UPLOAD = re.compile(r"/api/cards/[^/]+/documents")
_CLOSE = (b"connection", b"close")

# Checks a request's credentials from its headers alone, in a worker thread (it may ask the
# database): the actor, None to leave it to the route (which will check again), or it
# raises the refusal (401, 403, ...) that the app's exception handlers turn into an answer.
Authenticate = Callable[[Request], Actor | None]


@dataclass(frozen=True)
class BodyCaps:
    """The largest body read for each kind of route, in bytes."""

    api: int  # /api, /ui and anything else
    upload: int  # POST /api/cards/{id}/documents
    hooks: int  # /hooks/...: the sources' webhooks

    def of(self, method: str, path: str) -> int:
        if path.startswith("/hooks/"):
            return self.hooks
        if method == "POST" and _UPLOAD.fullmatch(path):
            return self.upload
        return self.api


class BodyTooLarge(HTTPException):
    """413: the body passes its cap (by its Content-Length, or once read that far)."""

    def __init__(self, cap: int) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, f"the body is larger than {cap} bytes")


class RequestGate:
    """The middleware. A refusal is answered by the app's own exception handlers (the same
    answer a route would give) with `Connection: close` when a body is still unread: the
    client's remaining bytes are not read, uvicorn closes the connection after the answer."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        caps: BodyCaps,
        authenticate: Authenticate,
    ) -> None:
        self.app = app
        self.caps = caps
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request, path = Request(scope), scope["path"]
        body = _CappedBody(receive, self.caps.of(request.method, path), request)
        try:
            if path == "/api" or path.startswith("/api/"):
                scope[ACTOR_KEY] = await run_in_threadpool(self.authenticate, request)
            if body.declared > body.cap:
                raise BodyTooLarge(body.cap)
        except Exception as refusal:
            await _answer(scope, refusal, body.wrap(send))
            return
        try:
            await self.app(scope, body.receive, body.wrap(send))
        except BodyTooLarge as refusal:
            # Reached here only if no exception handler of the app answered it.
            if body.answered:
                raise
            await _answer(scope, refusal, body.wrap(send))


class _CappedBody:
    """The request's body as the app reads it, counted; and its answer, marked to close the
    connection when it goes out before the body was read to its end."""

    def __init__(self, receive: Receive, cap: int, request: Request) -> None:
        self._receive = receive
        self.cap = cap
        length = request.headers.get("content-length", "")
        # uvicorn (h11) already refused a malformed Content-Length with 400.
        self.declared = int(length) if length.isascii() and length.isdigit() else 0
        chunked = "transfer-encoding" in request.headers
        self.pending = self.declared > 0 or chunked  # bytes the client still means to send
        self.read = 0
        self.answered = False

    async def receive(self) -> Message:
        if self.read > self.cap:
            raise BodyTooLarge(self.cap)
        message = await self._receive()
        if message["type"] == "http.request":
            self.read += len(message.get("body", b""))
            if self.read > self.cap:
                raise BodyTooLarge(self.cap)  # before the app holds these bytes
            if not message.get("more_body", False):
                self.pending = False
        return message

    def wrap(self, send: Send) -> Send:
        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.answered = True
                if self.pending:
                    message["headers"] = [*message.get("headers", []), _CLOSE]
            await send(message)

        return answer


async def _answer(scope: Scope, refusal: Exception, send: Send) -> None:
    """Answer `refusal` with the app's handler for its class (as a route's exception would
    be); one without a handler goes on up (a 500, as anywhere)."""
    handlers: dict[Any, Callable[..., Any]] = getattr(scope.get("app"), "exception_handlers", {})
    handler = next((handlers[c] for c in type(refusal).__mro__ if c in handlers), None)
    if handler is None:
        raise refusal
    request = Request(scope)
    response = handler(request, refusal)
    if inspect.isawaitable(response):
        response = await response
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
