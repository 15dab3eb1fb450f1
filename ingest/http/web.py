"""The web page's server side: its static files under /ui/, sign-in and sign-out (the
session cookie of `ingest.http.cookies`, which the JSON API accepts like the bearer header),
and the live-update stream /api/events. The page itself calls /api.
"""

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from crm_core.changes import change_marker
from crm_core.db import read_only
from crm_core.permissions import Actor
from ingest.http.cookies import COOKIE, SessionCookie, presented_token
from ingest.http.deps import Context, Ctx, Who
from ingest.web.events import ChangeFeed

STATIC = Path(__file__).parents[1] / "web" / "static"
# The page shows hostile text (mail subjects and bodies): no inline script can run even if
# some text were ever put in as HTML, and nothing is loaded from elsewhere.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter()


class _Page(StaticFiles):
    """The static files, with the page's security headers."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def mount(app: FastAPI, ctx: Context) -> None:
    """Add the page's routes to `app` (before any catch-all mount) and its static files."""
    settings, sessions = ctx.settings, ctx.sessions
    app.state.web_cookie = SessionCookie(ctx.runtime.sealer, settings.ui_session_hours, sessions)
    app.state.web_feed = ChangeFeed(lambda: _read_marker(sessions), settings.ui_events_poll_seconds)
    app.include_router(router)
    app.mount("/ui", _Page(directory=STATIC, html=True), name="ui")


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.post("/ui/session", tags=["web page"])
def sign_in(
    request: Request,
    response: Response,
    token: Annotated[str, Body(embed=True, min_length=1, max_length=500)],
    ctx: Ctx,
) -> dict[str, Any]:
    """Sign the page in with a personal token (or the admin token): sets the HttpOnly,
    SameSite=Strict session cookie (Secure over https) that /api accepts; 401 for a
    token that is not valid."""
    found = ctx.actor_for(token.strip())
    if found is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this token is not valid: mistyped, revoked, or not one of this CRM",
        )
    cookie = _cookie(request)
    response.set_cookie(
        COOKIE,
        cookie.make(token.strip()),
        max_age=cookie.seconds,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return _who(found)


@router.get("/ui/session", tags=["web page"])
def whoami(who: Who) -> dict[str, Any]:
    """Who the page (or token) acts as."""
    return _who(who)


@router.delete("/ui/session", status_code=204, tags=["web page"])
def sign_out(request: Request) -> Response:
    """Sign out: the session ends on the server (a saved copy of its cookie gets 401,
    the user's other sessions go on) and the cookie is removed. The token itself stays
    valid."""
    _cookie(request).end(request.cookies.get(COOKIE, ""))
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.get(
    "/api/events",
    response_class=StreamingResponse,
    tags=["web page"],
    responses={200: {"content": {"text/event-stream": {}}}},
)
def events(who: Who, request: Request, ctx: Ctx) -> StreamingResponse:
    """Server-Sent Events: `change` once at the start and after each change of cards,
    history, activities, unread marks or counters (checked every
    CRM_UI_EVENTS_POLL_SECONDS); the page then fetches what it shows again."""
    authorization = request.headers.get("authorization", "")
    session = request.cookies.get(COOKIE, "")
    feed: ChangeFeed = request.app.state.web_feed

    def still_valid() -> bool:  # the token is not revoked, the session not signed out
        return ctx.actor_for(presented_token(request, authorization, session)) is not None

    return StreamingResponse(
        feed.stream(still_valid),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def end_streams(app: FastAPI) -> None:
    """Called when the server shuts down: uvicorn waits for open responses, and an event
    stream never ends by itself."""
    feed = getattr(app.state, "web_feed", None)
    if isinstance(feed, ChangeFeed):
        feed.close()


def _cookie(request: Request) -> SessionCookie:
    cookie: SessionCookie = request.app.state.web_cookie
    return cookie


def _read_marker(sessions: sessionmaker[Session]) -> tuple[int, ...]:
    with read_only(sessions) as session:
        return change_marker(session)


def _who(actor: Actor) -> dict[str, Any]:
    return {"user_id": actor.user_id, "admin": actor.admin}
