"""Fixtures of the crm_core tests: the access-rights world (users, departments, roles) and the
outside probe's office (Sales and Support, a client per user)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.support.access import World, grants
from tests.support.helpers import create_user, grant
from tests.support.office import Office


@pytest.fixture
def world(api: httpx.Client, runtime: Runtime, clock: FakeClock) -> Iterator[World]:
    me = create_user(api, "me@example.com", "Me")
    colleague = create_user(api, "colleague@example.com", "Colleague")
    stranger = create_user(api, "stranger@example.com", "Stranger")
    sales = api.post("/api/departments", json={"name": "Sales"}).json()
    support = api.post("/api/departments", json={"name": "Support"}).json()
    for person, department in ((me, sales), (colleague, sales), (stranger, support)):
        placed = api.patch(
            f"/api/users/{person['id']}/access", json={"department_id": department["id"]}
        )
        assert placed.status_code == 200, placed.text
    role = api.post("/api/roles", json={"name": "tested", "permissions": grants()}).json()
    assert (
        api.put(f"/api/users/{me['id']}/roles", json={"role_ids": [role["id"]]}).status_code == 200
    )
    token = api.post(f"/api/users/{me['id']}/tokens", json={"name": "matrix"}).json()["token"]
    user = httpx.Client(
        base_url=str(api.base_url), headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    # The history settings in their most open form, so the matrix tests the card rights
    api.patch("/api/settings", json={"reopen_tasks": "editors", "delete_documents": "editors"})
    try:
        yield World(
            api,
            user,
            me["id"],
            role["id"],
            {"own": me["id"], "colleague": colleague["id"], "stranger": stranger["id"]},
            clock,
        )
    finally:
        user.close()


@pytest.fixture
def office(api: httpx.Client, runtime: Runtime, clock: FakeClock) -> Iterator[Office]:
    sales = api.post("/api/departments", json={"name": "Sales"}).json()
    support = api.post("/api/departments", json={"name": "Support"}).json()
    ids, emails, clients = {}, {}, {}
    for name, department in (("alice", sales), ("bob", support), ("carol", sales)):
        user = create_user(api, f"{name}@example.com", name.title())
        placed = api.patch(
            f"/api/users/{user['id']}/access", json={"department_id": department["id"]}
        )
        assert placed.status_code == 200, placed.text
        if name != "carol":  # Carol keeps the default: her own items only
            grant(api, user["id"], deal="department")
        token = api.post(f"/api/users/{user['id']}/tokens", json={"name": "probe"}).json()
        ids[name], emails[name] = user["id"], user["email"]
        clients[name] = httpx.Client(
            base_url=str(api.base_url),
            headers={"Authorization": f"Bearer {token['token']}"},
            timeout=10,
        )
    try:
        yield Office(api, clients["alice"], clients["bob"], clients["carol"], ids, emails, clock)
    finally:
        for client in clients.values():
            client.close()
