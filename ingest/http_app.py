"""The HTTP front door: the JSON API and the webhooks, on FastAPI + uvicorn.

Routes stay thin: authenticate (bearer token for /api, the source's signature for /hooks),
validate with `crm_core.schemas`, call one use case in one transaction, serialise. Core
errors map to 404/403/409/422; a bad signature to 401; a database outage to 503. The gate
of `ingest.http_limits` checks /api credentials before any body is read and caps every
body; uvicorn closes a connection whose request head does not come in time.
"""

import asyncio
import contextlib
import logging
import math
import re
import secrets
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

import uvicorn
from fastapi import (
    Cookie,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from crm_core import accounts, calendar, permissions, schemas, services
from crm_core.api import Clock, make_router
from crm_core.db import read_only, unit_of_work
from crm_core.errors import Conflict, CoreError, Forbidden, InvalidInput, NotFound
from crm_core.models import InboundStatus, Source, utcnow
from crm_core.permissions import Actor
from ingest import api_docs, http_limits, inbound, metrics, my_inbound, placement, sources
from ingest.calllog import webhook as calllog_hook
from ingest.calllog.processing import place_call
from ingest.chat import payloads as chat_payloads
from ingest.chat import webhook as chat_hook
from ingest.chat.processing import place_chat
from ingest.errors import RejectedInput, StoreUnavailable
from ingest.mailbox import mailboxes
from ingest.mailbox.addresses import encode_archive_address, hash_archive_token, new_archive_token
from ingest.payments import webhook as payments_hook
from ingest.payments.processing import place_payment
from ingest.runtime import Runtime
from ingest.signatures import BadSignature
from ingest.web import routes as web

T = TypeVar("T")
# A front door's accept: (sessions, sources, request, now, default region) -> its answer.
HookAccept = Callable[
    [sessionmaker[Session], sources.SourceBook, sources.HookRequest, datetime, str], T
]

log = logging.getLogger(__name__)

# A 422 lists at most this many problems, each in at most this many characters.
MAX_PROBLEMS = 50
MAX_PROBLEM_TEXT = 500

_ERROR_STATUS: dict[type[CoreError], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Forbidden: status.HTTP_403_FORBIDDEN,
    Conflict: status.HTTP_409_CONFLICT,
    InvalidInput: status.HTTP_422_UNPROCESSABLE_CONTENT,
}


def create_app(runtime: Runtime, api_token: str, clock: Clock = utcnow) -> FastAPI:
    """The whole HTTP app; `clock` is injectable so tests can move time."""
    sessions, settings = runtime.sessions, runtime.settings
    book = sources.SourceBook(sessions, runtime.sealer, settings.source_cache_seconds)
    app = FastAPI(
        title="CRM ingest",
        version="0.1.0",
        # FastAPI's own /docs and /redoc load their files from a CDN: ours are served here.
        docs_url=None,
        redoc_url=None,
        description="Cards, history, counters, Kanban and inbound status of the CRM ingestion "
        "worker. Every /api route needs `Authorization: Bearer <token>` (or the web page's "
        "session cookie, see `POST /ui/session`); every /hooks route "
        "is authenticated by its source's signature instead.",
    )
    api_docs.mount(app)
    # Read by `make_http_server` (the server is built apart from the app).
    app.state.http_header_timeout_seconds = settings.http_header_timeout_seconds

    def actor_for(token: str, acting: int | None = None) -> Actor | None:
        """The admin token (acting for `acting`), or a user's own token (acting as them,
        with their roles); None for anything else."""
        if not token:
            return None
        if secrets.compare_digest(token.encode(), api_token.encode()):
            if acting is not None:
                with reading() as session:
                    if not accounts.user_exists(session, acting):
                        raise NotFound(f"X-Acting-User: no user {acting}")
            return Actor(acting, admin=True)
        with reading() as session:
            return accounts.actor_for_token(session, token)

    def authenticated(
        request: Request,
        authorization: Annotated[str, Header()] = "",
        acting: Annotated[
            int | None,
            Header(
                alias="X-Acting-User",
                ge=1,
                le=2**31 - 1,
                description="with the admin token: the user the request acts for",
            ),
        ] = None,
        session_cookie: Annotated[
            str, Cookie(alias=web.COOKIE, description="the web page's session (sign-in)")
        ] = "",
    ) -> Actor:
        """The bearer token, or the web page's session cookie (see `ingest.web.routes`);
        401 for anything else. On /api the gate has checked them already, before the body
        was read: its actor is reused."""
        checked = request.scope.get(http_limits.ACTOR_KEY)
        if isinstance(checked, Actor):
            return checked
        found = actor_for(web.presented_token(request, authorization, session_cookie), acting)
        if found is not None:
            return found
        raise unauthorized()

    def actor_before_body(request: Request) -> Actor | None:
        """The gate's check of an /api request, from its headers alone: 401 (or the
        cookie's 403) before a byte of the body is read. X-Acting-User is left to
        `authenticated` (FastAPI validates it); the token alone decides the 401."""
        token = web.presented_token(
            request, request.headers.get("authorization", ""), request.cookies.get(web.COOKIE, "")
        )
        found = actor_for(token)
        if found is None:
            raise unauthorized()
        return None if "x-acting-user" in request.headers else found

    app.add_middleware(
        http_limits.RequestGate,
        caps=http_limits.BodyCaps(
            api=settings.api_max_body_bytes,
            upload=settings.upload_max_bytes,
            hooks=settings.hook_max_body_bytes,
        ),
        authenticate=actor_before_body,
    )

    Who = Annotated[Actor, Depends(authenticated)]

    def administrator(who: Who) -> Actor:
        permissions.require_admin(who)
        return who

    admin = [Depends(administrator)]

    # Each route opens its transaction itself and commits before answering: a client that
    # got 201 can read what it created (a yield-dependency would commit after the response).
    def writing() -> AbstractContextManager[Session]:
        return unit_of_work(sessions)

    def reading() -> AbstractContextManager[Session]:
        return read_only(sessions)

    @app.exception_handler(CoreError)
    async def core_error(_request: Request, exc: CoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_ERROR_STATUS.get(type(exc), 400))

    @app.exception_handler(BadSignature)
    async def bad_signature(_request: Request, exc: BadSignature) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_401_UNAUTHORIZED)

    @app.exception_handler(RejectedInput)
    async def rejected(_request: Request, exc: RejectedInput) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.reason}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
        )

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(_request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.error("inbound store unavailable: %s", exc)
        return JSONResponse(
            {"detail": "could not store the input, nothing was kept: try again later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def out_of_range(_request: Request, exc: Exception) -> JSONResponse:
        # A value the database cannot hold (an id of 20 digits: SQLite's OverflowError,
        # PostgreSQL's "integer out of range"; a NUL character in a text): the request's
        # fault, nothing was written.
        return JSONResponse(
            {"detail": "a value in the request is out of range or cannot be stored"},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    @app.exception_handler(SQLAlchemyError)
    async def database_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("database error: %r", exc)
        return JSONResponse(
            {"detail": "the database is unavailable, try again later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer repeats each wrong value (`input`): a stranger's 1 MiB list
        # given as a token came back whole and took the event loop 1.6 s to encode. Where
        # and what is wrong is enough; the value is the client's own.
        problems = [
            {"loc": list(e["loc"]), "msg": str(e["msg"])[:MAX_PROBLEM_TEXT], "type": e["type"]}
            for e in exc.errors()[:MAX_PROBLEMS]
        ]
        return JSONResponse(status_code=422, content={"detail": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Starlette's 405 names the methods of one route (or of the page's static files),
        # but a path is often served by several (GET, PATCH, DELETE /api/cards/{id}):
        # `Allow` lists every method the API documents for the path.
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            methods = api_docs.documented_methods(app.openapi(), request.url.path)
            if methods:
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(methods)}
        return await http_exception_handler(request, exc)

    web.mount(
        app,
        sessions=sessions,
        settings=settings,
        check_token=actor_for,
        actor=authenticated,
        sealer=runtime.sealer,
    )
    app.include_router(
        make_router(
            sessions, default_region=settings.default_region, clock=clock, actor=authenticated
        )
    )

    @app.get(
        "/calendar/{user_id}.ics",
        response_class=Response,
        responses={200: {"content": {"text/calendar": {}}}, 404: {"description": "no such feed"}},
    )
    def calendar_feed(request: Request, user_id: int, token: str = "") -> Response:
        """A user's activities as an iCalendar feed (RFC 5545) for calendar clients; the
        secret `token` (from `POST /api/users/{id}/calendar-feed`) is the authentication."""
        with reading() as session:
            user = accounts.user_for_calendar(session, user_id, token)
            visible = permissions.visible_activities(session, Actor(user.id, admin=user.is_admin))
            body = calendar.feed(session, user, visible, clock(), settings.archive_domain)
        return Response(body, media_type="text/calendar; charset=utf-8")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/metrics",
        dependencies=admin,
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    def prometheus_metrics() -> Response:
        """Prometheus figures of this process (inputs accepted, rejected, processed,
        unmatched, failed; end-to-end latency) and the queue depth. Needs the admin token
        (or an admin's): this listener also takes webhooks, so it may face the Internet."""
        return Response(metrics.exposition(sessions), media_type=metrics.CONTENT_TYPE)

    @app.post("/api/cards/{card_id}/archive-address", status_code=201)
    def issue_archive_address(card_id: int, who: Who) -> schemas.ArchiveAddressOut:
        """A new address for the card (for users who may edit it); a previous one keeps
        working for the grace period."""
        token = new_archive_token()
        with writing() as session:
            permissions.card_for(session, who, card_id, "edit")
            services.issue_archive_address(
                session,
                card_id,
                hash_archive_token(token),
                timedelta(seconds=settings.archive_grace_seconds),
                clock(),
            )
        return schemas.ArchiveAddressOut(
            address=encode_archive_address(token, settings.archive_domain)
        )

    @app.delete("/api/cards/{card_id}/archive-address", status_code=204)
    def revoke_archive_address(card_id: int, who: Who) -> Response:
        with writing() as session:
            permissions.card_for(session, who, card_id, "edit")
            services.revoke_archive_addresses(session, card_id, clock())
        return Response(status_code=204)

    @app.get("/api/inbound/{item_id}", dependencies=admin)
    def get_inbound(item_id: int) -> schemas.InboundOut:
        item = inbound.load(sessions, item_id)
        if item is None:
            raise NotFound(f"inbound item {item_id} does not exist")
        return schemas.InboundOut.model_validate(item)

    @app.get("/api/inbound", dependencies=admin)
    def list_inbound(
        status_filter: Annotated[InboundStatus | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> schemas.InboundListOut:
        items = inbound.list_items(sessions, status_filter.value if status_filter else None, limit)
        return schemas.InboundListOut(items=[schemas.InboundOut.model_validate(i) for i in items])

    @app.get(
        "/api/me/inbound",
        response_model=schemas.MyInboundListOut,
        summary="My own refused, held or failed inputs",
        responses={401: {"model": schemas.ErrorOut, "description": "missing or wrong token"}},
    )
    def list_my_inbound(
        who: Who,
        status_filter: Annotated[
            my_inbound.OwnStatus | None,
            Query(
                alias="status",
                description="only these; without it, all three and the "
                "processed inputs that carry a notice",
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> schemas.MyInboundListOut:
        """The signed-in user's own mail that processing refused, held or failed after the
        SMTP 250, and mail put on its card with a notice, newest first, each with its reason
        in plain words (any user; only their own: sent from their address). The admin token
        acting for no user gets 422: it has no address (name a user with X-Acting-User)."""
        if who.user_id is None:
            raise InvalidInput("the admin token is no user's: name one with X-Acting-User")
        with reading() as session:
            found = my_inbound.own_inputs(session, who.user_id, status_filter, limit, clock())
        return schemas.MyInboundListOut(items=found)

    @app.post("/api/inbound/{item_id}/reprocess", dependencies=admin, status_code=202)
    def reprocess_inbound(item_id: int) -> schemas.InboundOut:
        """A failed, rejected or held input goes through processing again, from the start
        (a held one is released from the loop limit); 409 for any other status."""
        item = inbound.reprocess(sessions, item_id, clock())
        enqueue_all(item.channel, [item.id])
        return schemas.InboundOut.model_validate(item)

    @app.put("/api/inbound/{item_id}/legal-hold", dependencies=admin)
    def hold_inbound(item_id: int, body: schemas.LegalHoldIn) -> schemas.InboundOut:
        """Keep this raw input past the retention period (or let it go again)."""
        return schemas.InboundOut.model_validate(
            inbound.set_legal_hold(sessions, item_id, body.hold)
        )

    @app.put("/api/cards/{card_id}/legal-hold", dependencies=admin)
    def hold_card(card_id: int, body: schemas.LegalHoldIn) -> schemas.LegalHoldIn:
        """Keep every raw input that landed on this card past the retention period."""
        with writing() as session:
            services.set_card_legal_hold(session, card_id, body.hold)
        return body

    def source_out(request: Request, source: Source) -> dict[str, Any]:
        return {
            "id": source.id,
            "kind": source.kind,
            "name": source.name,
            "hook_url": str(request.base_url).rstrip("/") + sources.hook_path(source),
            "settings": source.settings,
            "created_at": source.created_at,
            "revoked_at": source.revoked_at,
        }

    @app.post("/api/sources", status_code=201, dependencies=admin)
    def create_source(request: Request, body: schemas.SourceIn) -> schemas.SourceCreatedOut:
        """Register a sending integration. The answer shows its signing secret once."""
        given = body.model_dump(mode="json", exclude={"kind", "name"})
        with writing() as session:
            source, secret = sources.register(session, runtime.sealer, body.kind, body.name, given)
            out = source_out(request, source)
        return schemas.SourceCreatedOut(**out, secret=secret)

    @app.get("/api/sources", dependencies=admin)
    def list_sources(request: Request) -> schemas.SourceListOut:
        with reading() as session:
            found = sources.list_sources(session)
            return schemas.SourceListOut(
                items=[schemas.SourceOut(**source_out(request, s)) for s in found]
            )

    @app.get("/api/sources/{source_id}", dependencies=admin)
    def get_source(request: Request, source_id: int) -> schemas.SourceOut:
        with reading() as session:
            return schemas.SourceOut(**source_out(request, sources.get(session, source_id)))

    @app.delete("/api/sources/{source_id}", status_code=204, dependencies=admin)
    def revoke_source(source_id: int) -> Response:
        """Revoke: its hook answers 404 from now on (through other HTTP processes, within
        CRM_SOURCE_CACHE_SECONDS)."""
        with writing() as session:
            sources.revoke(session, source_id, clock())
        book.forget(source_id)
        return Response(status_code=204)

    @app.post("/api/mailboxes", status_code=201, dependencies=admin)
    def create_mailbox(body: schemas.MailboxIn) -> schemas.MailboxOut:
        """An IMAP mailbox to read; its password or token is never shown again."""
        with writing() as session:
            mailbox = mailboxes.register(session, runtime.sealer, **body.model_dump())
            return schemas.MailboxOut.model_validate(mailbox)

    @app.get("/api/mailboxes", dependencies=admin)
    def list_mailboxes() -> schemas.MailboxListOut:
        with reading() as session:
            found = mailboxes.list_mailboxes(session)
            return schemas.MailboxListOut(
                items=[schemas.MailboxOut.model_validate(m) for m in found]
            )

    @app.get("/api/mailboxes/{mailbox_id}", dependencies=admin)
    def get_mailbox(mailbox_id: int) -> schemas.MailboxOut:
        """The mailbox with its cursor and its poller's last success or error."""
        with reading() as session:
            return schemas.MailboxOut.model_validate(mailboxes.get(session, mailbox_id))

    @app.delete("/api/mailboxes/{mailbox_id}", status_code=204, dependencies=admin)
    def revoke_mailbox(mailbox_id: int) -> Response:
        """Stop reading it (within CRM_IMAP_RELOAD_SECONDS)."""
        with writing() as session:
            mailboxes.revoke(session, mailbox_id, clock())
        return Response(status_code=204)

    async def hook_request(request: Request, source_id: int) -> sources.HookRequest:
        """The request as a hook needs it; a body over CRM_HOOK_MAX_BODY_BYTES is not read
        to its end (413), whatever Content-Length says."""
        limit = settings.hook_max_body_bytes
        too_large = HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"the body is larger than {limit} bytes"
        )
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        query = f"?{request.url.query}" if request.url.query else ""
        return sources.HookRequest(
            source_id, request.headers, request.url.path + query, bytes(body)
        )

    @app.post(
        "/hooks/calllog/{source_id}",
        status_code=202,
        openapi_extra=CALLLOG_OPENAPI,
        responses={401: {"description": "bad or missing signature; nothing stored"}},
    )
    async def calllog(request: Request, source_id: int) -> schemas.HookAccepted:
        """Calls from a `calllog` source (our JSON, signed) or a `twilio_voice` source
        (Twilio's status callback, `X-Twilio-Signature`). Every call is stored before the
        answer; a batch with bad calls stores the good ones and lists the bad ones."""
        accepted = await take_hook(
            calllog_hook.accept, request, source_id, calllog_hook.CHANNEL, lambda a: a.ids
        )
        return accepted

    @app.get("/hooks/chat/{source_id}", response_class=PlainTextResponse)
    def chat_subscription(
        source_id: int,
        mode: Annotated[str | None, Query(alias="hub.mode")] = None,
        token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
        challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
    ) -> str:
        """Meta's verification request for a `whatsapp` source: the challenge, as text,
        when the verify token is right; 403 otherwise."""
        return chat_hook.verify_subscription(book, source_id, mode, token, challenge)

    @app.post(
        "/hooks/chat/{source_id}",
        status_code=202,
        openapi_extra=CHAT_OPENAPI,
        responses={401: {"description": "bad or missing signature; nothing stored"}},
    )
    async def chat(request: Request, source_id: int) -> Response:
        """Messages and delivery statuses from a `widget` (our JSON, signed like the call-log
        hook), `whatsapp` (Cloud API, `X-Hub-Signature-256`) or `twilio` (SMS and WhatsApp,
        `X-Twilio-Signature`) source. Each event is stored before the answer: 202 with the
        ids for the widget, 200 for WhatsApp (Meta wants 200), empty TwiML for Twilio."""
        accepted = await take_hook(
            chat_hook.accept, request, source_id, chat_hook.CHANNEL, lambda a: a.answer.ids
        )
        if accepted.kind == "twilio":
            return Response(TWIML_EMPTY, status_code=200, media_type="text/xml")
        code = 200 if accepted.kind == "whatsapp" else 202
        return JSONResponse(accepted.answer.model_dump(mode="json"), status_code=code)

    @app.post(
        "/hooks/payments/{source_id}",
        status_code=202,
        openapi_extra=payments_hook.OPENAPI,
        responses={
            200: {"description": "a `stripe` source's event: stored, or `ignored`"},
            401: {"description": "bad or missing signature; nothing stored"},
        },
    )
    async def payments(request: Request, source_id: int) -> Response:
        """Payments of orders from a `stripe` source (Stripe's events, `Stripe-Signature`;
        answered 200) or a `payment` source (our JSON, signed like the call-log hook;
        answered 202). Each event is stored before the answer."""
        accepted = await take_hook(
            payments_hook.accept, request, source_id, payments_hook.CHANNEL, lambda a: a.answer.ids
        )
        return JSONResponse(
            accepted.answer.model_dump(mode="json"), status_code=accepted.status_code
        )

    async def take_hook(
        accept: HookAccept[T],
        request: Request,
        source_id: int,
        channel: str,
        ids_of: Callable[[T], list[int]],
    ) -> T:
        """Verify and store a hook's request with its channel's `accept`, then send what it
        stored to the workers: one trip off the event loop for both."""
        hook = await hook_request(request, source_id)
        now = clock()

        def take() -> T:
            accepted = accept(sessions, book, hook, now, settings.default_region)
            enqueue_all(channel, ids_of(accepted))
            return accepted

        return await run_in_threadpool(take)

    def enqueue_all(channel: str, ids: list[int]) -> None:
        inbound.hand_over(runtime.pipeline.enqueue, channel, ids)

    @app.get("/api/unmatched", dependencies=admin)
    def list_unmatched(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> schemas.InboundListOut:
        """Inputs understood but with no card to go to (e.g. a call from an unknown number)."""
        items = inbound.list_items(sessions, InboundStatus.UNMATCHED.value, limit)
        return schemas.InboundListOut(items=[schemas.InboundOut.model_validate(i) for i in items])

    region = settings.default_region
    unmatched_places: dict[str, placement.Place] = {
        "call": lambda session, item, now, card: place_call(session, item, now, card, region),
        "chat": lambda session, item, now, card: place_chat(session, item, now, card, region),
        "payment": lambda session, item, now, card: place_payment(session, item, now, card, region),
    }

    @app.post("/api/unmatched/{item_id}/attach", dependencies=admin)
    def attach(item_id: int, body: schemas.AttachIn) -> schemas.InboundOut:
        """Put an unmatched input on a card, with every effect it would have had there."""
        with writing() as session:
            item = placement.attach(session, item_id, body.card_id, unmatched_places, clock())
            return schemas.InboundOut.model_validate(item)

    return app


_CALL_EXAMPLE = {
    "call_id": "8f14e45f-2026-11-22-0001",
    "employee": "anna@example.com",
    "number": "06 12 34 56 78",
    "direction": "incoming",
    "outcome": "missed",
    "started_at": "2026-11-22T10:15:00+01:00",
    "duration_seconds": 0,
    "recording_url": None,
}

CALLLOG_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            'For a `calllog` source: one call, or `{"calls": [...]}` with up to 1,000. '
            "Headers: `X-Timestamp` (Unix seconds, within 5 minutes of our clock) and "
            '`X-Signature: sha256=<hex HMAC-SHA256 of timestamp + "." + raw body, keyed '
            "with the source's secret>`. A call id already received is answered 202 again "
            "and changes nothing. For a `twilio_voice` source: Twilio's form-encoded status "
            "callback, signed by Twilio."
        ),
        "content": {
            "application/json": {
                "schema": schemas.CallIn.model_json_schema(),
                "examples": {
                    "one call": {"value": _CALL_EXAMPLE},
                    "a batch": {"value": {"calls": [_CALL_EXAMPLE]}},
                },
            },
            "application/x-www-form-urlencoded": {
                "schema": schemas.TwilioCallStatusIn.model_json_schema()
            },
        },
    }
}


_CHAT_EXAMPLE = {
    "message_id": "w-20261122-0001",
    "visitor": {"id": "v-42", "name": "John Doe", "email": "john.doe@acme.com", "phone": None},
    "text": "Hello, is the offer still valid?",
    "sent_at": "2026-11-22T10:15:00+01:00",
    "attachments": [{"url": "https://cdn.example.com/f/quote.pdf", "name": "quote.pdf"}],
}

CHAT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            'For a `widget` source: one message (or `{"type": "status", "message_id", '
            '"status", "at"}` for a delivery report), signed like the call-log hook: '
            '`X-Timestamp` and `X-Signature: sha256=<hex HMAC-SHA256 of timestamp + "." + raw '
            "body>`. For a `whatsapp` source: the Cloud API webhook as Meta sends it, with "
            "`X-Hub-Signature-256`. For a `twilio` source: Twilio's form-encoded incoming "
            "message webhook or message status callback, with `X-Twilio-Signature`. A message "
            "id already received is answered 2xx again and changes nothing."
        ),
        "content": {
            "application/json": {
                "schema": chat_payloads.WidgetMessageIn.model_json_schema(),
                "examples": {"a visitor's message": {"value": _CHAT_EXAMPLE}},
            },
            "application/x-www-form-urlencoded": {
                "schema": chat_payloads.TwilioMessageIn.model_json_schema()
            },
        },
    }
}

# Twilio reads the answer to a message webhook as TwiML: an empty one sends no reply.
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "missing or wrong bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


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
