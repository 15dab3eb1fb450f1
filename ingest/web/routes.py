"""The web page's server side: its static files under /ui/, sign-in and sign-out (a session
cookie that the JSON API accepts like the bearer header), and the live-update stream
/api/events. Mounted on the HTTP app by `ingest.http_app`; the page itself calls /api.
"""

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from crm_core import accounts
from crm_core.changes import change_marker
from crm_core.db import read_only, unit_of_work
from crm_core.permissions import Actor
from ingest.sealing import Sealer, SealingError
from ingest.settings import Settings
from ingest.web.events import ChangeFeed

STATIC = Path(__file__).parent / "static"
# The session cookie carries the user's token itself (sealed): it is already a bearer
# secret, so nothing raw is stored server-side and revoking the token ends the session at
# once. Each sign-in also seals a session id of its own: signing out records that id as
# ended (in the database, so every HTTP process knows), and a saved copy of the cookie
# signs nothing in any more, while the user's other sessions go on.
COOKIE = "crm_session"
# Requests that change something with the cookie must carry this header: a page of another
# site cannot set it without a CORS preflight this app never grants (defence against CSRF
# beside SameSite=Strict, which trusts sibling subdomains).
UI_HEADER, UI_MARK = "X-Requested-With", "crm-ui"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The page shows hostile text (mail subjects and bodies): no inline script can run even if
# some text were ever put in as HTML, and nothing is loaded from elsewhere.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

TokenCheck = Callable[[str], Actor | None]
ActorDependency = Callable[..., Actor]


@dataclass(frozen=True)
class WebSession:
    """What a session cookie holds."""

    token: str
    session_id: str
    until: datetime


class SessionCookie:
    """The session cookie's value: the token, a session id and its end, sealed with the
    service's key, so the browser holds no readable token and an old or signed-out cookie
    stops working on the server too."""

    def __init__(self, sealer: Sealer, hours: float, sessions: sessionmaker[Session]) -> None:
        self._sealer = sealer
        self._sessions = sessions
        self.seconds = int(hours * 3600)

    def make(self, token: str) -> str:
        until = str(int(time.time()) + self.seconds)
        session_id = secrets.token_urlsafe(16)
        return self._sealer.seal({"token": token, "until": until, "session": session_id})

    def open(self, cookie: str) -> WebSession | None:
        """What a live cookie holds; None for a forged or expired one, and for one made
        before sessions had ids (it could not be ended)."""
        if not cookie:
            return None
        try:
            opened = self._sealer.unseal(cookie)
            until = int(opened.get("until", "0"))
        except (SealingError, ValueError):
            return None
        token, session_id = str(opened.get("token", "")), str(opened.get("session", ""))
        if until < time.time() or not token or not session_id:
            return None
        return WebSession(token, session_id, datetime.fromtimestamp(until, UTC))

    def token_of(self, cookie: str) -> str:
        """The token of a live cookie whose session was not signed out; "" otherwise."""
        opened = self.open(cookie)
        if opened is None:
            return ""
        with read_only(self._sessions) as session:
            if accounts.web_session_ended(session, opened.session_id):
                return ""
        return opened.token

    def end(self, cookie: str) -> None:
        """Sign this cookie's session out, for every copy of the cookie."""
        opened = self.open(cookie)
        if opened is not None:
            with unit_of_work(self._sessions) as session:
                accounts.end_web_session(
                    session, opened.session_id, opened.until, datetime.now(UTC)
                )


def presented_token(request: Request, authorization: str, cookie: str) -> str:
    """The bearer token of the Authorization header, else the session cookie's; "" if none.
    A change (POST, PUT, PATCH, DELETE) made with the cookie needs the page's header (403)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    unsafe = request.method not in _SAFE_METHODS
    if cookie and unsafe and request.headers.get(UI_HEADER) != UI_MARK:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"a change made with the web session needs the header {UI_HEADER}: {UI_MARK}",
        )
    return str(request.app.state.web_cookie.token_of(cookie)) if cookie else ""


class _Page(StaticFiles):
    """The static files, with the page's security headers."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def mount(
    app: FastAPI,
    *,
    sessions: sessionmaker[Session],
    settings: Settings,
    check_token: TokenCheck,
    actor: ActorDependency,
    sealer: Sealer,
) -> None:
    """Add the page's routes to `app` (before any catch-all mount) and its static files."""
    cookie = app.state.web_cookie = SessionCookie(sealer, settings.ui_session_hours, sessions)
    feed = ChangeFeed(lambda: _read_marker(sessions), settings.ui_events_poll_seconds)
    app.state.web_feed = feed
    Who = Annotated[Actor, Depends(actor)]

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.post("/ui/session", tags=["web page"])
    def sign_in(
        request: Request,
        response: Response,
        token: Annotated[str, Body(embed=True, min_length=1, max_length=500)],
    ) -> dict[str, Any]:
        """Sign the page in with a personal token (or the admin token): sets the HttpOnly,
        SameSite=Strict session cookie (Secure over https) that /api accepts; 401 for a
        token that is not valid."""
        found = check_token(token.strip())
        if found is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "this token is not valid: mistyped, revoked, or not one of this CRM",
            )
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

    @app.get("/ui/session", tags=["web page"])
    def whoami(who: Who) -> dict[str, Any]:
        """Who the page (or token) acts as."""
        return _who(who)

    @app.delete("/ui/session", status_code=204, tags=["web page"])
    def sign_out(request: Request) -> Response:
        """Sign out: the session ends on the server (a saved copy of its cookie gets 401,
        the user's other sessions go on) and the cookie is removed. The token itself stays
        valid."""
        cookie.end(request.cookies.get(COOKIE, ""))
        response = Response(status_code=204)
        response.delete_cookie(
            COOKIE,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    @app.get(
        "/api/events",
        response_class=StreamingResponse,
        tags=["web page"],
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    def events(who: Who, request: Request) -> StreamingResponse:
        """Server-Sent Events: `change` once at the start and after each change of cards,
        history, activities, unread marks or counters (checked every
        CRM_UI_EVENTS_POLL_SECONDS); the page then fetches what it shows again."""
        authorization = request.headers.get("authorization", "")
        session = request.cookies.get(COOKIE, "")

        def still_valid() -> bool:  # the token is not revoked, the session not signed out
            return check_token(presented_token(request, authorization, session)) is not None

        return StreamingResponse(
            feed.stream(still_valid),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    app.mount("/ui", _Page(directory=STATIC, html=True), name="ui")


def end_streams(app: FastAPI) -> None:
    """Called when the server shuts down: uvicorn waits for open responses, and an event
    stream never ends by itself."""
    feed = getattr(app.state, "web_feed", None)
    if isinstance(feed, ChangeFeed):
        feed.close()


def _read_marker(sessions: sessionmaker[Session]) -> tuple[int, ...]:
    with read_only(sessions) as session:
        return change_marker(session)


def _who(actor: Actor) -> dict[str, Any]:
    return {"user_id": actor.user_id, "admin": actor.admin}
