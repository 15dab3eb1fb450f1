"""The request context of every route, built once per app (`Context`, on `app.state`): the
runtime's sessions and settings, the clock, the transactions, and who the request acts as
(bearer token, the web session cookie, X-Acting-User), taken by routes as dependencies.
"""

import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Cookie, Depends, Header, HTTPException, Request, status
from sqlalchemy.orm import Session, sessionmaker

from crm_core import accounts, permissions
from crm_core.db import read_only, unit_of_work
from crm_core.errors import NotFound
from crm_core.permissions import Actor
from ingest.http import cookies, limits
from ingest.pipeline import send_stored
from ingest.runtime import Runtime
from ingest.settings import Settings
from ingest.sources import SourceBook

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Context:
    """What the routes share: one per app, made by `ingest.http.app.create_app`."""

    runtime: Runtime
    api_token: str
    clock: Clock  # injectable, so tests can move time
    book: SourceBook  # the webhook sources, cached

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.runtime.sessions

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    # Each route opens its transaction itself and commits before answering: a client that
    # got 201 can read what it created (a yield-dependency would commit after the response).
    def writing(self) -> AbstractContextManager[Session]:
        return unit_of_work(self.sessions)

    def reading(self) -> AbstractContextManager[Session]:
        return read_only(self.sessions)

    def enqueue(self, channel: str, ids: list[int]) -> None:
        """Send stored inputs to the workers."""
        send_stored(self.runtime.pipeline.enqueue, channel, ids)

    def actor_for(self, token: str, acting: int | None = None) -> Actor | None:
        """The admin token (acting for `acting`), or a user's own token (acting as them,
        with their roles); None for anything else."""
        if not token:
            return None
        if secrets.compare_digest(token.encode(), self.api_token.encode()):
            if acting is not None:
                with self.reading() as session:
                    if not accounts.user_exists(session, acting):
                        raise NotFound(f"X-Acting-User: no user {acting}")
            return Actor(acting, admin=True)
        with self.reading() as session:
            return accounts.actor_for_token(session, token)


def context(request: Request) -> Context:
    """The app's context (a dependency)."""
    found: Context = request.app.state.context
    return found


Ctx = Annotated[Context, Depends(context)]


def authenticated(
    request: Request,
    ctx: Ctx,
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
        str, Cookie(alias=cookies.COOKIE, description="the web page's session (sign-in)")
    ] = "",
) -> Actor:
    """The bearer token, or the web page's session cookie (see `ingest.http.cookies`);
    401 for anything else. On /api the gate has checked them already, before the body
    was read: its actor is reused."""
    checked = request.scope.get(limits.ACTOR_KEY)
    if isinstance(checked, Actor):
        return checked
    token = cookies.presented_token(request, authorization, session_cookie)
    found = ctx.actor_for(token, acting)
    if found is not None:
        return found
    raise unauthorized()


def actor_before_body(request: Request) -> Actor | None:
    """The gate's check of an /api request, from its headers alone: 401 (or the
    cookie's 403) before a byte of the body is read. X-Acting-User is left to
    `authenticated` (FastAPI validates it); the token alone decides the 401."""
    token = cookies.presented_token(
        request, request.headers.get("authorization", ""), request.cookies.get(cookies.COOKIE, "")
    )
    found = context(request).actor_for(token)
    if found is None:
        raise unauthorized()
    return None if "x-acting-user" in request.headers else found


def unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "missing or wrong bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


Who = Annotated[Actor, Depends(authenticated)]


# Checked as dependencies, before the body is read: a caller without the right learns
# nothing of what a valid request would look like.
def administrator(who: Who) -> Actor:
    permissions.require_admin(who)
    return who


def self_or_admin(user_id: int, who: Who) -> Actor:
    permissions.require_self_or_admin(who, user_id)
    return who


Admin = Annotated[Actor, Depends(administrator)]
SelfOrAdmin = Annotated[Actor, Depends(self_or_admin)]
# For routes that need an administrator but not who it is: `dependencies=ADMIN`.
ADMIN = [Depends(administrator)]
