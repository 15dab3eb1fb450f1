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
from crm_core.api import Clock, make_router
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


def create_app(
    sessions: sessionmaker[Session], settings: Settings, api_token: str, clock: Clock = utcnow
) -> FastAPI:
    """The whole HTTP app; `clock` is injectable so tests can move time."""
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

    app.include_router(
        make_router(sessions, default_region=settings.default_region, clock=clock),
        dependencies=auth,
    )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

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
                clock(),
            )
        return schemas.ArchiveAddressOut(
            address=encode_archive_address(token, settings.archive_domain)
        )

    @app.delete("/api/cards/{card_id}/archive-address", status_code=204, dependencies=auth)
    def revoke_archive_address(card_id: int) -> Response:
        with writing() as session:
            services.revoke_archive_addresses(session, card_id, clock())
        return Response(status_code=204)

    @app.get("/api/inbound/{item_id}", dependencies=auth)
    def get_inbound(item_id: int) -> schemas.InboundOut:
        item = inbound.load(sessions, item_id)
        if item is None:
            raise NotFound(f"inbound item {item_id} does not exist")
        return schemas.InboundOut.model_validate(item)

    @app.get("/api/inbound", dependencies=auth)
    def list_inbound(
        status_filter: Annotated[InboundStatus | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> schemas.InboundListOut:
        items = inbound.list_items(sessions, status_filter.value if status_filter else None, limit)
        return schemas.InboundListOut(items=[schemas.InboundOut.model_validate(i) for i in items])

    return app


class _HttpServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: the CLI owns SIGINT/SIGTERM for every part."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


def make_http_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for `app`: `await server.serve()`, stop with `server.should_exit = True`."""
    config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="off")
    return _HttpServer(config)
