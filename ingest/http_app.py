"""The HTTP front door: the JSON API (and, later, the webhooks) on FastAPI + uvicorn.

Routes stay thin: authenticate, validate with `crm_core.schemas`, call one use case in one
transaction, serialise. Core errors map to 404/403/409/422; a database outage to 503.
"""

import contextlib
import logging
import secrets
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from crm_core import schemas, services
from crm_core.db import read_only, unit_of_work
from crm_core.errors import Conflict, CoreError, Forbidden, InvalidInput, NotFound
from crm_core.models import InboundStatus, utcnow
from ingest import inbound
from ingest.mailbox.addresses import encode_archive_address, hash_archive_token, new_archive_token
from ingest.settings import Settings

log = logging.getLogger(__name__)

_ERROR_STATUS: dict[type[CoreError], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Forbidden: status.HTTP_403_FORBIDDEN,
    Conflict: status.HTTP_409_CONFLICT,
    InvalidInput: status.HTTP_422_UNPROCESSABLE_CONTENT,
}


def create_app(sessions: sessionmaker[Session], settings: Settings, api_token: str) -> FastAPI:
    app = FastAPI(
        title="CRM ingest",
        version="0.1.0",
        description="Cards, history, counters, Kanban and inbound status of the CRM ingestion "
        "worker. Every /api route needs `Authorization: Bearer <token>`.",
    )

    def authenticated(authorization: Annotated[str, Header()] = "") -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), api_token.encode()
        ):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    # Each route opens its transaction itself and commits before answering: a client that
    # got 201 can read what it created (a yield-dependency would commit after the response).
    def writing() -> AbstractContextManager[Session]:
        return unit_of_work(sessions)

    def reading() -> AbstractContextManager[Session]:
        return read_only(sessions)

    auth = [Depends(authenticated)]

    @app.exception_handler(CoreError)
    async def core_error(_request: Request, exc: CoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_ERROR_STATUS.get(type(exc), 400))

    @app.exception_handler(SQLAlchemyError)
    async def database_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("database error: %r", exc)
        return JSONResponse(
            {"detail": "the database is unavailable, try again later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/users", status_code=201, dependencies=auth)
    def create_user(body: schemas.UserIn) -> schemas.UserOut:
        with writing() as session:
            user = services.create_user(session, str(body.email), body.name, body.timezone)
            return schemas.UserOut.of(user)

    @app.get("/api/users/{user_id}", dependencies=auth)
    def get_user(user_id: int) -> schemas.UserOut:
        with reading() as session:
            return schemas.UserOut.of(services.get_user(session, user_id))

    @app.get("/api/users/{user_id}/counters", dependencies=auth)
    def get_counters(user_id: int) -> schemas.CountersOut:
        with reading() as session:
            found = services.user_counters(session, user_id, utcnow())
        return schemas.CountersOut(
            incoming=found.incoming, planned=found.planned, today=found.today
        )

    @app.post("/api/cards", status_code=201, dependencies=auth)
    def create_card(body: schemas.CardIn) -> schemas.CardOut:
        with writing() as session:
            card = services.create_card(
                session,
                title=body.title,
                entity_type=body.entity_type,
                stage=body.stage,
                responsible_id=body.responsible_id,
                contact_emails=[str(e) for e in body.contact_emails],
                contact_phones=body.contact_phones,
                default_region=settings.default_region,
            )
            return schemas.CardOut.of(card, unread=False)

    @app.get("/api/cards/{card_id}", dependencies=auth)
    def get_card(card_id: int) -> schemas.CardOut:
        with reading() as session:
            card = services.get_card(session, card_id)
            unread = services.is_unread(session, card.id, card.responsible_id)
            return schemas.CardOut.of(card, unread)

    @app.post("/api/cards/{card_id}/read", status_code=204, dependencies=auth)
    def mark_read(card_id: int) -> Response:
        with writing() as session:
            card = services.get_card(session, card_id)
            services.mark_read(session, card.id, card.responsible_id)
        return Response(status_code=204)

    @app.post("/api/cards/{card_id}/unread", status_code=204, dependencies=auth)
    def mark_unread(card_id: int) -> Response:
        with writing() as session:
            card = services.get_card(session, card_id)
            services.mark_unread(session, card.id, card.responsible_id, utcnow())
        return Response(status_code=204)

    @app.post("/api/cards/{card_id}/archive-address", status_code=201, dependencies=auth)
    def issue_archive_address(card_id: int) -> schemas.ArchiveAddressOut:
        """A new address for the card; a previous one keeps working for the grace period."""
        token = new_archive_token()
        with writing() as session:
            services.issue_archive_address(
                session,
                card_id,
                hash_archive_token(token),
                timedelta(seconds=settings.archive_grace_seconds),
                utcnow(),
            )
        return schemas.ArchiveAddressOut(
            address=encode_archive_address(token, settings.archive_domain)
        )

    @app.delete("/api/cards/{card_id}/archive-address", status_code=204, dependencies=auth)
    def revoke_archive_address(card_id: int) -> Response:
        with writing() as session:
            services.revoke_archive_addresses(session, card_id, utcnow())
        return Response(status_code=204)

    @app.get("/api/cards/{card_id}/history", dependencies=auth)
    def card_history(card_id: int) -> schemas.HistoryOut:
        with reading() as session:
            entries = services.card_history(session, card_id)
            return schemas.HistoryOut(items=[schemas.HistoryItemOut.of(e) for e in entries])

    @app.get("/api/kanban", dependencies=auth)
    def kanban(
        entity_type: str = "deal",
        stage: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> schemas.KanbanOut:
        with reading() as session:
            cards = services.kanban(session, entity_type, stage, limit)
            return schemas.KanbanOut(
                cards=[
                    schemas.CardOut.of(c, services.is_unread(session, c.id, c.responsible_id))
                    for c in cards
                ]
            )

    @app.get("/api/inbound/{item_id}", dependencies=auth)
    def get_inbound(item_id: int) -> schemas.InboundOut:
        item = inbound.load(sessions, item_id)
        if item is None:
            raise NotFound(f"inbound item {item_id} does not exist")
        return schemas.InboundOut.of(item)

    @app.get("/api/inbound", dependencies=auth)
    def list_inbound(
        status_filter: Annotated[InboundStatus | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> schemas.InboundListOut:
        items = inbound.list_items(sessions, status_filter.value if status_filter else None, limit)
        return schemas.InboundListOut(items=[schemas.InboundOut.of(i) for i in items])

    return app


class _HttpServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: the CLI owns SIGINT/SIGTERM for every part."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


def make_http_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for `app`: `await server.serve()`, stop with `server.should_exit = True`."""
    config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="off")
    return _HttpServer(config)
