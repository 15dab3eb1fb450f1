"""Access rights, generated: every API route against every level of the action it needs,
for a card of the user's own, of a colleague of their department and of a stranger.

SPEC "Access rights"; seed 003. A card the user may not read answers 404 (never 403: ids are
not confirmed); one they may read but not change answers 403; bulk endpoints check every id
they are given before changing anything. The route list is read from the app itself: a new
route without a line here fails the test.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from crm_core.permissions import LEVELS
from tests.support.access import REACH, RELATIONS, Call, Target, World, make_target, set_role

# --- what each route needs ---------------------------------------------------------------

CARD_ROUTES: dict[tuple[str, str], tuple[str, Call, int]] = {
    ("GET", "/api/cards/{card_id}"): ("read", lambda c, w, t: c.get(f"/api/cards/{t.card}"), 200),
    ("PATCH", "/api/cards/{card_id}"): (
        "edit",
        lambda c, w, t: c.patch(f"/api/cards/{t.card}", json={"stage": "won"}),
        200,
    ),
    ("DELETE", "/api/cards/{card_id}"): (
        "delete",
        lambda c, w, t: c.delete(f"/api/cards/{t.card}"),
        204,
    ),
    ("POST", "/api/cards/{card_id}/read"): (
        "read",
        lambda c, w, t: c.post(f"/api/cards/{t.card}/read"),
        204,
    ),
    ("POST", "/api/cards/{card_id}/unread"): (
        "read",
        lambda c, w, t: c.post(f"/api/cards/{t.card}/unread"),
        204,
    ),
    ("GET", "/api/cards/{card_id}/history"): (
        "read",
        lambda c, w, t: c.get(f"/api/cards/{t.card}/history"),
        200,
    ),
    ("POST", "/api/cards/{card_id}/notes"): (
        "edit",
        lambda c, w, t: c.post(f"/api/cards/{t.card}/notes", json={"text": "Met them"}),
        201,
    ),
    ("GET", "/api/cards/{card_id}/documents"): (
        "read",
        lambda c, w, t: c.get(f"/api/cards/{t.card}/documents"),
        200,
    ),
    ("POST", "/api/cards/{card_id}/documents"): (
        "edit",
        lambda c, w, t: c.post(
            f"/api/cards/{t.card}/documents", params={"name": "a.txt"}, content=b"a"
        ),
        201,
    ),
    ("POST", "/api/cards/{card_id}/comments"): (
        "edit",
        lambda c, w, t: c.post(f"/api/cards/{t.card}/comments", json={"text": "Hi"}),
        201,
    ),
    ("GET", "/api/cards/{card_id}/comments"): (
        "read",
        lambda c, w, t: c.get(f"/api/cards/{t.card}/comments"),
        200,
    ),
    ("POST", "/api/cards/{card_id}/archive-address"): (
        "edit",
        lambda c, w, t: c.post(f"/api/cards/{t.card}/archive-address"),
        201,
    ),
    ("DELETE", "/api/cards/{card_id}/archive-address"): (
        "edit",
        lambda c, w, t: c.delete(f"/api/cards/{t.card}/archive-address"),
        204,
    ),
    ("GET", "/api/documents/{document_id}/content"): (
        "read",
        lambda c, w, t: c.get(f"/api/documents/{t.document}/content"),
        200,
    ),
    ("DELETE", "/api/documents/{document_id}"): (
        "edit",  # delete_documents = editors in this world
        lambda c, w, t: c.delete(f"/api/documents/{t.document}"),
        204,
    ),
    ("POST", "/api/activities"): (
        "edit",
        lambda c, w, t: c.post(
            "/api/activities",
            json={"card_id": t.card, "type": "task", "responsible_id": w.user_id},
        ),
        201,
    ),
    ("GET", "/api/activities/{activity_id}"): (
        "read",
        lambda c, w, t: c.get(f"/api/activities/{t.activity}"),
        200,
    ),
    ("PATCH", "/api/activities/{activity_id}"): (
        "edit",
        lambda c, w, t: c.patch(f"/api/activities/{t.activity}", json={"subject": "New"}),
        200,
    ),
    ("DELETE", "/api/activities/{activity_id}"): (
        "edit",
        lambda c, w, t: c.delete(f"/api/activities/{t.activity}"),
        204,
    ),
    ("POST", "/api/activities/{activity_id}/close"): (
        "edit",
        lambda c, w, t: c.post(f"/api/activities/{t.activity}/close", json={}),
        200,
    ),
    ("POST", "/api/activities/{activity_id}/reopen"): (
        "edit",
        lambda c, w, t: reopen(c, w, t),
        200,
    ),
    ("POST", "/api/activities/{activity_id}/comments"): (
        "edit",
        lambda c, w, t: c.post(f"/api/activities/{t.activity}/comments", json={"text": "Hi"}),
        201,
    ),
    ("POST", "/api/activities/bulk"): ("edit", lambda c, w, t: bulk(c, w, t), 200),
}


def reopen(client: httpx.Client, w: World, t: Target) -> httpx.Response:
    closed = w.admin.post(f"/api/activities/{t.activity}/close", json={})
    assert closed.status_code == 200
    return client.post(f"/api/activities/{t.activity}/reopen")


def bulk(client: httpx.Client, w: World, t: Target) -> httpx.Response:
    """One of the user's own activities and the target's, marked done together: all or
    nothing, whatever the order of the ids."""
    mine = make_target(w, "own").activity
    response = client.post(
        "/api/activities/bulk", json={"ids": [t.activity, mine], "action": "done"}
    )
    still_open = w.admin.get(f"/api/activities/{mine}").json()["is_open"]
    assert still_open == (response.status_code != 200), "bulk changed some ids and not others"
    return response


# Not about one card: who may call them at all.
ADMIN_ONLY = {
    ("POST", "/api/users"),
    ("PATCH", "/api/users/{user_id}/access"),
    ("PUT", "/api/users/{user_id}/roles"),
    ("POST", "/api/roles"),
    ("GET", "/api/roles"),
    ("PATCH", "/api/roles/{role_id}"),
    ("POST", "/api/departments"),
    ("PATCH", "/api/settings"),
    ("GET", "/api/inbound/{item_id}"),
    ("GET", "/api/inbound"),
    ("POST", "/api/inbound/{item_id}/reprocess"),
    ("PUT", "/api/inbound/{item_id}/legal-hold"),
    ("PUT", "/api/cards/{card_id}/legal-hold"),
    ("POST", "/api/sources"),
    ("GET", "/api/sources"),
    ("GET", "/api/sources/{source_id}"),
    ("DELETE", "/api/sources/{source_id}"),
    ("POST", "/api/mailboxes"),
    ("GET", "/api/mailboxes"),
    ("GET", "/api/mailboxes/{mailbox_id}"),
    ("DELETE", "/api/mailboxes/{mailbox_id}"),
    ("GET", "/api/unmatched"),
    ("POST", "/api/unmatched/{item_id}/attach"),
    ("GET", "/metrics"),  # Prometheus' scraper holds an admin's token (README)
}
SELF_OR_ADMIN = {
    ("PATCH", "/api/users/{user_id}"),
    ("GET", "/api/users/{user_id}/roles"),
    ("POST", "/api/users/{user_id}/tokens"),
    ("GET", "/api/users/{user_id}/tokens"),
    ("DELETE", "/api/users/{user_id}/tokens/{token_id}"),
    ("POST", "/api/users/{user_id}/calendar-feed"),
    ("GET", "/api/users/{user_id}/counters"),  # and the user's managers
}
ANY_USER = {
    ("GET", "/api/users"),
    ("GET", "/api/users/{user_id}"),
    ("GET", "/api/settings"),
    ("GET", "/api/departments"),
    ("GET", "/ui/session"),  # who the web page is signed in as
    ("GET", "/api/channels"),  # the registry's history filters and labels: no data
}
# Any user, but it never ends: tested in test_web_session.py (401 without a token).
STREAMED = {("GET", "/api/events")}  # says only "something changed"; pages read what they may
# Lists: what they show is filtered card by card (test_lists_show_only_readable_cards).
FILTERED = {
    ("POST", "/api/cards"),  # checked against `add` in test_adding_follows_the_add_level
    (
        "GET",
        "/api/me/inbound",
    ),  # only the caller's own inputs: tests/ingest/http/test_my_inbound.py
    ("GET", "/api/kanban"),
    ("GET", "/api/activities"),
    ("GET", "/api/calendar"),
    ("GET", "/api/reports/activities"),
}
# Authenticated otherwise: by the provider's signature, or the feed's secret token.
NOT_BEARER = {
    ("POST", "/hooks/calllog/{source_id}"),
    ("GET", "/hooks/chat/{source_id}"),
    ("POST", "/hooks/chat/{source_id}"),
    ("POST", "/hooks/payments/{source_id}"),
    ("GET", "/calendar/{user_id}.ics"),
    ("POST", "/ui/session"),  # the web page's sign-in: the token is in the body
    ("DELETE", "/ui/session"),  # sign-out: only removes the cookie
}


def test_every_route_has_its_rule(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    routes = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
    }
    covered = (
        set(CARD_ROUTES) | ADMIN_ONLY | SELF_OR_ADMIN | ANY_USER | FILTERED | NOT_BEARER | STREAMED
    )
    assert routes - covered == set(), "routes without an access rule in this test"
    assert covered - routes == set(), "rules for routes that no longer exist"


def expected(action: str, read_level: str, action_level: str, relation: str, ok: int) -> int:
    if relation not in REACH[read_level]:
        return 404
    if relation not in REACH[action_level]:
        return 403
    return ok


@pytest.mark.timeout(600)
def test_card_routes_give_exactly_what_the_role_allows(world: World) -> None:
    failures = []
    checked = 0
    for (method, path), (action, call, ok) in CARD_ROUTES.items():
        # The level of the route's own action, with read open; and read itself, with the
        # action open (a card one may not read is never changed, even with edit at all).
        combos = (
            [(level, level) for level in LEVELS]
            if action == "read"
            else [
                *(("all", level) for level in LEVELS),
                *((level, "all") for level in LEVELS),
            ]
        )
        for (read_level, action_level), relation in itertools.product(combos, RELATIONS):
            set_role(world, **{"read": read_level, action: action_level})
            target = make_target(world, relation)
            response = call(world.user, world, target)
            want = expected(action, read_level, action_level, relation, ok)
            checked += 1
            if response.status_code != want:
                failures.append(
                    f"{method} {path} read={read_level} {action}={action_level} "
                    f"{relation}'s card: {response.status_code} instead of {want} "
                    f"({response.text[:120]})"
                )
    assert failures == [], "\n".join(failures)
    print(f"\n{checked} card-route cases checked")


def test_admin_only_and_personal_routes(world: World, api: httpx.Client) -> None:
    me, other = world.ids["own"], world.ids["stranger"]

    def path(template: str, user: int) -> str:
        return (
            template.replace("{user_id}", str(user))
            .replace("{token_id}", "1")
            .replace("{role_id}", str(world.role_id))
            .replace("{item_id}", "1")
            .replace("{source_id}", "1")
            .replace("{mailbox_id}", "1")
        )

    bodies: dict[str, Any] = {"json": {}}
    for method, template in sorted(ADMIN_ONLY):
        response = world.user.request(method, path(template, me), **bodies)
        assert response.status_code == 403, (method, template, response.text)
    for method, template in sorted(SELF_OR_ADMIN):
        response = world.user.request(method, path(template, other), **bodies)
        assert response.status_code == 403, (method, template, response.text)
        if method in ("GET", "POST"):
            own = world.user.request(method, path(template, me), **bodies)
            assert own.status_code in (200, 201), (method, template, own.text)
    for method, template in sorted(ANY_USER):
        assert world.user.request(method, path(template, other)).status_code == 200
    # A manager reads their employee's counters; a user with the admin flag may do all
    api.patch(f"/api/users/{other}", json={"manager_id": me})
    assert world.user.get(f"/api/users/{other}/counters").status_code == 200
    api.patch(f"/api/users/{me}/access", json={"is_admin": True})
    assert world.user.get("/api/roles").status_code == 200
