"""The access-rights test world: an administrator, a user and the colleagues they may or may
not reach, roles granted at each level, and a card (or other entity) of each relation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx

from tests.conftest import FakeClock

Call = Callable[[httpx.Client, "World", "Target"], httpx.Response]
RELATIONS = ("own", "colleague", "stranger")
# Which of the three responsibles each level reaches (the user and the colleague share the
# Sales department; the stranger is in Support).
REACH = {
    "none": set(),
    "own": {"own"},
    "department": {"own", "colleague"},
    "all": {"own", "colleague", "stranger"},
}


@dataclass
class World:
    admin: httpx.Client
    user: httpx.Client  # with the user's own token
    user_id: int
    role_id: int
    ids: dict[str, int]  # relation -> responsible's user id
    clock: FakeClock


@dataclass
class Target:
    card: int
    activity: int
    document: int


def grants(**levels: str) -> dict[str, dict[str, str]]:
    """deal: every action at `default`, except those given; other entity types: own."""
    default = levels.pop("default", "own")
    found = {e: dict.fromkeys(("read", "add", "edit", "delete"), "own") for e in ENTITIES}
    found["deal"] = {a: levels.get(a, default) for a in ("read", "add", "edit", "delete")}
    return found


ENTITIES = ("deal", "lead", "invoice", "smart_process")


def make_target(w: World, relation: str, entity_type: str = "deal") -> Target:
    responsible = w.ids[relation]
    card = w.admin.post(
        "/api/cards",
        json={
            "title": f"{relation} {entity_type}",
            "entity_type": entity_type,
            "stage": "new",
            "responsible_id": responsible,
        },
    ).json()
    activity = w.admin.post(
        "/api/activities",
        json={
            "card_id": card["id"],
            "type": "call",
            "subject": "Call back",
            # Never the user's own: its responsible sees and closes an activity whatever the
            # card rights (tests/crm_core/test_access_probe_activities.py), which would blur
            # this matrix.
            "responsible_id": responsible if relation != "own" else w.ids["colleague"],
            "deadline": (w.clock() + timedelta(hours=2)).isoformat(),
        },
    ).json()
    document = w.admin.post(
        f"/api/cards/{card['id']}/documents",
        params={"name": "offer.txt"},
        content=b"the offer",
        headers={"Content-Type": "text/plain"},
    ).json()
    return Target(card["id"], activity["id"], document["id"])


def set_role(w: World, **levels: str) -> None:
    response = w.admin.patch(f"/api/roles/{w.role_id}", json={"permissions": grants(**levels)})
    assert response.status_code == 200, response.text
