"""The web page's session cookie: sealed with the service's key, it carries the user's token
and is accepted by /api like the bearer header (`presented_token`, read by `ingest.http.deps`
and the page's routes in `ingest.http.web`).
"""

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import HTTPException, Request, status
from sqlalchemy.orm import Session, sessionmaker

from crm_core import accounts
from crm_core.db import read_only, unit_of_work
from ingest.sealing import Sealer, SealingError

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
