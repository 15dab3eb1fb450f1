"""The web page's server side over real HTTP: sign-in with a token sets a session cookie
that the JSON API accepts, sign-out ends that session on the server (a saved copy of the
cookie gets 401, other sessions go on), ended sessions are forgotten; opening a card tells
since when it was unread, and the change marker moves with what the page shows.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from crm_core import accounts
from crm_core.changes import change_marker
from crm_core.db import read_only, unit_of_work
from crm_core.models import InboundItem, utcnow
from ingest.http.cookies import COOKIE, SessionCookie
from ingest.runtime import Runtime
from tests.conftest import API_TOKEN
from tests.support.helpers import (
    archive_address,
    create_card,
    history,
    make_mail,
    send,
    wait_for,
)
from tests.support.web import UI, browser, served, user_with_token


def test_a_bad_token_does_not_sign_in(api: httpx.Client) -> None:
    with browser(api) as page:
        # When the page signs in with a token that is not one
        answer = page.post("/ui/session", json={"token": "not-a-token"})
        # Then 401 with a message, and no cookie
        assert answer.status_code == 401
        assert "not valid" in answer.json()["detail"]
        assert "set-cookie" not in answer.headers
        assert page.get("/ui/session").status_code == 401
        # An empty token is a bad request, named
        empty = page.post("/ui/session", json={"token": ""})
        assert empty.status_code == 422 and "token" in empty.text


def test_the_session_cookie_works_for_the_api_until_sign_out(api: httpx.Client) -> None:
    user_id, token = user_with_token(api)
    with browser(api) as page:
        # Given the page signed in with the user's own token
        signed = page.post("/ui/session", json={"token": token})
        assert signed.status_code == 200, signed.text
        assert signed.json() == {"user_id": user_id, "admin": False}
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert "secure" not in cookie  # plain http here; Secure when served over https
        assert token not in str(page.get("/ui/session").json())
        # Then the JSON API knows who it is, from the cookie alone
        assert page.get("/ui/session").json() == {"user_id": user_id, "admin": False}
        assert page.get(f"/api/users/{user_id}/counters").status_code == 200
        # and a change made with the cookie needs the page's header (CSRF), with a message
        card = {
            "title": "From the page",
            "entity_type": "deal",
            "stage": "new",
            "responsible_id": user_id,
        }
        refused = page.post("/api/cards", json=card)
        assert refused.status_code == 403 and "X-Requested-With" in refused.json()["detail"]
        assert api.get("/api/kanban").json()["cards"] == []
        assert page.post("/api/cards", json=card, headers=UI).status_code == 201
        # When the page signs out
        out = page.delete("/ui/session", headers=UI)
        assert out.status_code == 204
        # Then the cookie is gone and the API answers 401
        assert not page.cookies
        assert page.get(f"/api/users/{user_id}/counters").status_code == 401
        assert page.get("/ui/session").status_code == 401


def test_the_admin_token_signs_in_as_admin_and_a_revoked_token_ends_the_session(
    api: httpx.Client,
) -> None:
    user_id, token = user_with_token(api)
    with browser(api) as admin_page, browser(api) as page:
        assert admin_page.post("/ui/session", json={"token": API_TOKEN}).json() == {
            "user_id": None,
            "admin": True,
        }
        assert admin_page.get("/api/inbound").status_code == 200
        # The page of an administrator acts for a user with X-Acting-User, as the API does
        acting = admin_page.get("/ui/session", headers={"X-Acting-User": str(user_id)})
        assert acting.json() == {"user_id": user_id, "admin": True}
        # A user's session ends when their token is revoked (the cookie holds the token)
        assert page.post("/ui/session", json={"token": token}).status_code == 200
        tokens = api.get(f"/api/users/{user_id}/tokens").json()["items"]
        api.delete(f"/api/users/{user_id}/tokens/{tokens[0]['id']}")
        assert page.get(f"/api/users/{user_id}/counters").status_code == 401


def test_the_cookie_holds_no_readable_token_and_ends_on_the_server_too(
    api: httpx.Client, runtime: Runtime
) -> None:
    user_id, token = user_with_token(api)
    with browser(api) as page:
        assert page.post("/ui/session", json={"token": token}).status_code == 200
        value = page.cookies[COOKIE]
        assert token not in value
        assert page.get(f"/api/users/{user_id}/counters").status_code == 200
        # A cookie past its time (whatever the browser keeps), altered, or without a session
        # id (made before sign-out could end a session) signs nothing in
        expired = SessionCookie(runtime.sealer, -1, runtime.sessions).make(token)
        no_id = runtime.sealer.seal({"token": token, "until": str(int(time.time()) + 3600)})
        for bad in (expired, value[:-4] + "AAAA", no_id):
            page.cookies.set(COOKIE, bad)
            assert page.get(f"/api/users/{user_id}/counters").status_code == 401


CARD = {"title": "From the page", "entity_type": "deal", "stage": "new"}


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(
    api: httpx.Client, runtime: Runtime
) -> None:
    user_id, token = user_with_token(api)
    counters = f"/api/users/{user_id}/counters"
    card = {**CARD, "responsible_id": user_id}
    with browser(api) as page, browser(api) as laptop:
        # Given two sessions of one user, and a copy of the first one's cookie kept aside
        assert page.post("/ui/session", json={"token": token}).status_code == 200
        assert laptop.post("/ui/session", json={"token": token}).status_code == 200
        saved = page.cookies[COOKIE]
        # When the first signs out
        assert page.delete("/ui/session", headers=UI).status_code == 204
        # Then the saved copy signs nothing in: reads and changes get 401
        with browser(api) as copy:
            copy.cookies.set(COOKIE, saved)
            assert copy.get(counters).status_code == 401
            assert copy.get("/ui/session").status_code == 401
            assert copy.post("/api/cards", json=card, headers=UI).status_code == 401
            # and signing it out again changes nothing
            assert copy.delete("/ui/session", headers=UI).status_code == 204
        # while the other session goes on
        assert laptop.get(counters).status_code == 200
        assert laptop.post("/api/cards", json=card, headers=UI).status_code == 201
        other = laptop.cookies[COOKIE]
    # Another HTTP process of the service (same database) knows it too
    with served(runtime) as (_, url, _, _):
        for cookie, answer in ((saved, 401), (other, 200)):
            with httpx.Client(base_url=url, cookies={COOKIE: cookie}, timeout=30) as elsewhere:
                assert elsewhere.get(counters).status_code == answer


def test_ended_sessions_are_forgotten_once_their_cookies_have_ended(runtime: Runtime) -> None:
    now = utcnow()
    with unit_of_work(runtime.sessions) as session:
        accounts.end_web_session(session, "old", now + timedelta(hours=1), now)
    # Signing one session out twice at once (two processes) is no error
    with unit_of_work(runtime.sessions) as session:
        accounts.end_web_session(session, "old", now + timedelta(hours=1), now)
    with read_only(runtime.sessions) as session:
        assert accounts.web_session_ended(session, "old")
    # A sign-out after the old cookie's end forgets it (no copy of it works anyway)
    later = now + timedelta(hours=2)
    with unit_of_work(runtime.sessions) as session:
        accounts.end_web_session(session, "new", later + timedelta(hours=1), later)
    with read_only(runtime.sessions) as session:
        assert not accounts.web_session_ended(session, "old")
        assert accounts.web_session_ended(session, "new")


@pytest.mark.usefixtures("worker")
def test_opening_a_card_tells_since_when_it_was_unread(
    api: httpx.Client, smtp_server: tuple[str, int]
) -> None:
    # Given a mail on Anna's card, unread for her
    user_id, token = user_with_token(api)
    card = create_card(api, user_id)
    address = archive_address(api, card["id"])
    send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    [entry] = wait_for(lambda: history(api, card["id"]), what="the mail on the card")
    anna = httpx.Client(
        base_url=str(api.base_url), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    # When Anna opens the card
    opened = anna.get(f"/api/cards/{card['id']}").json()
    # Then it is read now, and the page learns which history was new to her
    assert opened["unread"] is False
    assert opened["unread_since"] is not None
    since = datetime.fromisoformat(opened["unread_since"])
    assert since <= datetime.fromisoformat(entry["logged_at"])
    again = anna.get(f"/api/cards/{card['id']}").json()
    assert again["unread"] is False and again["unread_since"] is None
    anna.close()


def test_the_change_marker_moves_with_what_the_page_shows(
    api: httpx.Client, runtime: Runtime
) -> None:
    """What the stream polls (crm_core.changes), step by step: each change the page shows
    moves it, including an input's status leaving `received` (no history is written when
    an input is rejected or fails)."""

    def marker() -> tuple[int, ...]:
        with read_only(runtime.sessions) as session:
            return change_marker(session)

    seen = [marker()]

    def moved() -> bool:
        now = marker()
        changed = now != seen[-1]
        seen.append(now)
        return changed

    user_id, _ = user_with_token(api)
    moved()
    card = create_card(api, user_id)
    assert moved()
    assert not moved()  # nothing happened
    api.post(f"/api/cards/{card['id']}/notes", json={"text": "called John"})
    assert moved()
    api.post(f"/api/cards/{card['id']}/unread")
    assert moved()
    api.post(f"/api/cards/{card['id']}/read")
    assert moved()
    with unit_of_work(runtime.sessions) as session:
        item = InboundItem(channel="email", raw=b"x", dedupe_key="k1", recipient="r")
        session.add(item)
    assert moved()
    with unit_of_work(runtime.sessions) as session:
        session.execute(update(InboundItem).values(status="rejected", reason="not a user"))
    assert moved()
