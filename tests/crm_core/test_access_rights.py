"""Access rights beyond the route matrix: a card one may not read looks like no card, rights
per entity type, the add level, lists of readable cards only, tokens (shown once, stored
hashed, revocable), and an activity naming only cards one may read.

SPEC "Access rights"; seed 003. A card the user may not read answers 404 (never 403: ids are
not confirmed); one they may read but not change answers 403.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import httpx

from crm_core.permissions import LEVELS
from ingest.runtime import Runtime
from tests.support.access import ENTITIES, REACH, RELATIONS, World, make_target, set_role


def test_a_card_one_may_not_read_looks_like_no_card(world: World) -> None:
    set_role(world, read="own")
    hidden = make_target(world, "stranger")
    ghost = world.user.get("/api/cards/999999")
    seen = world.user.get(f"/api/cards/{hidden.card}")
    assert (seen.status_code, ghost.status_code) == (404, 404)
    assert seen.json()["detail"] == f"card {hidden.card} does not exist"
    # The admin token sees it
    assert world.admin.get(f"/api/cards/{hidden.card}").status_code == 200


def test_rights_are_per_entity_type(world: World) -> None:
    levels = {e: dict.fromkeys(("read", "add", "edit", "delete"), "none") for e in ENTITIES}
    levels["lead"] = dict.fromkeys(("read", "add", "edit", "delete"), "all")
    assert (
        world.admin.patch(f"/api/roles/{world.role_id}", json={"permissions": levels}).status_code
        == 200
    )
    for entity in ENTITIES:
        target = make_target(world, "stranger", entity)
        response = world.user.get(f"/api/cards/{target.card}")
        assert response.status_code == (200 if entity == "lead" else 404), entity


def test_adding_follows_the_add_level(world: World) -> None:
    for level, relation in itertools.product(LEVELS, RELATIONS):
        set_role(world, add=level)
        response = world.user.post(
            "/api/cards",
            json={
                "title": "New",
                "entity_type": "deal",
                "stage": "new",
                "responsible_id": world.ids[relation],
            },
        )
        assert response.status_code == (201 if relation in REACH[level] else 403), (level, relation)


def test_lists_show_only_readable_cards(world: World) -> None:
    targets = {r: make_target(world, r) for r in RELATIONS}
    since = (world.clock() - timedelta(days=1)).isoformat()
    until = (world.clock() + timedelta(days=1)).isoformat()
    for level in LEVELS:
        set_role(world, read=level)
        want = {targets[r].card for r in REACH[level]}
        kanban = world.user.get("/api/kanban", params={"entity_type": "deal"}).json()["cards"]
        assert {c["id"] for c in kanban} == want, level
        listed = world.user.get("/api/activities").json()["items"]
        assert {a["card_id"] for a in listed} == want, level
        users = ",".join(str(world.ids[r]) for r in RELATIONS)
        calendar = world.user.get("/api/calendar", params={"users": users, "view": "week"}).json()
        shown = {a["card_id"] for u in calendar["users"] for a in u["activities"]}
        assert shown == want, level
        report = world.user.get(
            "/api/reports/activities", params={"since": since, "until": until}
        ).json()
        assert sum(r["count"] for r in report["rows"]) == len(want), level


def test_tokens_are_shown_once_stored_hashed_and_revocable(
    world: World, api: httpx.Client, runtime: Runtime
) -> None:
    issued = world.user.post(f"/api/users/{world.user_id}/tokens", json={"name": "phone"})
    assert issued.status_code == 201
    token = issued.json()["token"]
    listed = world.user.get(f"/api/users/{world.user_id}/tokens").json()["items"]
    assert token not in str(listed) and {t["name"] for t in listed} == {"matrix", "phone"}
    with runtime.engine.connect() as conn:
        stored = [row[0] for row in conn.exec_driver_sql("SELECT token_hash FROM api_tokens")]
    assert token not in stored and all(len(h) == 64 for h in stored)
    phone = httpx.Client(
        base_url=str(api.base_url), headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    try:
        assert phone.get(f"/api/users/{world.user_id}").status_code == 200
        revoked = world.user.delete(f"/api/users/{world.user_id}/tokens/{issued.json()['id']}")
        assert revoked.status_code == 204
        assert phone.get(f"/api/users/{world.user_id}").status_code == 401
    finally:
        phone.close()
    # The acting user of a token is its owner: comments are written as them
    target = make_target(world, "own")
    comment = world.user.post(f"/api/cards/{target.card}/comments", json={"text": "Mine"})
    assert comment.json()["author_id"] == world.user_id
    forged = world.user.post(
        f"/api/cards/{target.card}/comments",
        json={"text": "As someone else", "author_id": world.ids["colleague"]},
    )
    assert forged.status_code == 403


def test_an_activity_names_only_the_cards_one_may_read(world: World) -> None:
    set_role(world, read="own", edit="own")
    mine = make_target(world, "own")
    hidden = make_target(world, "stranger")
    shared = world.admin.post(
        "/api/activities",
        json={
            "card_ids": [mine.card, hidden.card],
            "type": "task",
            "responsible_id": world.user_id,
        },
    ).json()
    assert world.admin.get(f"/api/activities/{shared['id']}").json()["card_ids"] == [
        mine.card,
        hidden.card,
    ]
    seen = world.user.get(f"/api/activities/{shared['id']}").json()
    assert seen["card_ids"] == [mine.card]
    listed = world.user.get("/api/activities", params={"card_id": mine.card}).json()["items"]
    assert all(hidden.card not in a["card_ids"] for a in listed)
