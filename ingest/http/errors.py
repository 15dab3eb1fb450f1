"""How the HTTP app answers an exception: core errors map to 404/403/409/422, a bad signature
to 401, a refused input to 422, a database or inbound-store outage to 503, a request of the
wrong shape to 422 listing its problems (`install` registers them on the app).
"""

import logging

from fastapi import FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_core.errors import Conflict, CoreError, Forbidden, InvalidInput, NotFound
from ingest.errors import RejectedInput, StoreUnavailable
from ingest.http import docs
from ingest.signatures import BadSignature

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


def install(app: FastAPI) -> None:
    """Register every handler of this module on `app`."""
    app.exception_handler(CoreError)(core_error)
    app.exception_handler(BadSignature)(bad_signature)
    app.exception_handler(RejectedInput)(rejected)
    app.exception_handler(StoreUnavailable)(store_unavailable)
    app.exception_handler(OverflowError)(out_of_range)
    app.exception_handler(DataError)(out_of_range)
    app.exception_handler(SQLAlchemyError)(database_error)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.exception_handler(StarletteHTTPException)(http_error)


async def core_error(_request: Request, exc: CoreError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=_ERROR_STATUS.get(type(exc), 400))


async def bad_signature(_request: Request, exc: BadSignature) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_401_UNAUTHORIZED)


async def rejected(_request: Request, exc: RejectedInput) -> JSONResponse:
    return JSONResponse({"detail": exc.reason}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def store_unavailable(_request: Request, exc: StoreUnavailable) -> JSONResponse:
    log.error("inbound store unavailable: %s", exc)
    return JSONResponse(
        {"detail": "could not store the input, nothing was kept: try again later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


async def out_of_range(_request: Request, exc: Exception) -> JSONResponse:
    # A value the database cannot hold (an id of 20 digits: SQLite's OverflowError,
    # PostgreSQL's "integer out of range"; a NUL character in a text): the request's
    # fault, nothing was written.
    return JSONResponse(
        {"detail": "a value in the request is out of range or cannot be stored"},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def database_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
    log.error("database error: %r", exc)
    return JSONResponse(
        {"detail": "the database is unavailable, try again later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own answer repeats each wrong value (`input`): a stranger's 1 MiB list
    # given as a token came back whole and took the event loop 1.6 s to encode. Where
    # and what is wrong is enough; the value is the client's own.
    problems = [
        {"loc": list(e["loc"]), "msg": str(e["msg"])[:MAX_PROBLEM_TEXT], "type": e["type"]}
        for e in exc.errors()[:MAX_PROBLEMS]
    ]
    return JSONResponse(status_code=422, content={"detail": problems})


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    # Starlette's 405 names the methods of one route (or of the page's static files),
    # but a path is often served by several (GET, PATCH, DELETE /api/cards/{id}):
    # `Allow` lists every method the API documents for the path.
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        methods = docs.documented_methods(request.app.openapi(), request.url.path)
        if methods:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(methods)}
    return await http_exception_handler(request, exc)
