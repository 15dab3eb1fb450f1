"""The HTTP app: builds FastAPI with the API documentation, the request gate (credentials
before the body, body caps), the exception handlers, the web page and every router.
Served by `ingest.http.server`.
"""

from fastapi import FastAPI

from crm_core.models import utcnow
from ingest.http import (
    access,
    activities,
    archive,
    calendar,
    cards,
    channels,
    comments,
    docs,
    documents,
    errors,
    history,
    hooks,
    inbound,
    limits,
    mailboxes,
    ops,
    reports,
    settings,
    sources,
    unmatched,
    users,
    web,
)
from ingest.http.deps import Clock, Context, actor_before_body
from ingest.registry import REGISTRY
from ingest.runtime import Runtime
from ingest.sources import SourceBook

ROUTERS = (
    users.router,
    access.router,
    cards.router,
    history.router,
    documents.router,
    comments.router,
    activities.router,
    calendar.router,
    reports.router,
    settings.router,
    ops.router,
    archive.router,
    inbound.router,
    sources.router,
    mailboxes.router,
    channels.router,
    unmatched.router,
)


def create_app(runtime: Runtime, api_token: str, clock: Clock = utcnow) -> FastAPI:
    """The whole HTTP app; `clock` is injectable so tests can move time."""
    config = runtime.settings
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
    docs.mount(app)
    # Read by `make_http_server` (the server is built apart from the app).
    app.state.http_header_timeout_seconds = config.http_header_timeout_seconds
    book = SourceBook(
        runtime.sessions, runtime.sealer, config.source_cache_seconds, REGISTRY.providers
    )
    ctx = app.state.context = Context(runtime, api_token, clock, book)
    app.add_middleware(
        limits.RequestGate,
        caps=limits.BodyCaps(
            api=config.api_max_body_bytes,
            upload=config.upload_max_bytes,
            hooks=config.hook_max_body_bytes,
        ),
        authenticate=actor_before_body,
    )
    errors.install(app)
    web.mount(app, ctx)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(hooks.router_for(REGISTRY))
    return app
