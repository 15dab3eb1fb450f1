"""Activities and their counters through the HTTP API, with a controllable clock: counter
modes, incoming counts, edits, deletes and bulk actions, concurrent closes, several cards,
filters, statuses and bad input.

Seeds 000 (counters and their modes), 003 and 004 (activities).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.support.activities import START, activity
from tests.support.helpers import counters, create_card, create_user, history


def test_counter_modes_as_seed_000_describes(api: httpx.Client, clock: FakeClock) -> None:
    clock.now = START
    anna = create_user(api, "anna@example.com")  # responsible for the deal
    boris = create_user(api, "boris@example.com")  # responsible for its activity
    card = create_card(api, anna["id"])
    activity(
        api, card_id=card["id"], responsible_id=boris["id"], deadline=START - timedelta(hours=1)
    )
    assert api.get("/api/settings").json()["counter_mode"] == "activity_responsible"
    assert counters(api, anna["id"])["planned"] == 0
    assert counters(api, boris["id"])["planned"] == 1
    # Item responsible: Anna sees every activity in her items, even one assigned to Boris
    switched = api.patch("/api/settings", json={"counter_mode": "item_responsible"})
    assert switched.json()["counter_mode"] == "item_responsible"
    assert counters(api, anna["id"])["planned"] == 1
    assert counters(api, boris["id"])["planned"] == 0
    # When the deal changes hands, its activities follow it in this mode
    api.patch(f"/api/cards/{card['id']}", json={"responsible_id": boris["id"]})
    assert counters(api, anna["id"])["planned"] == 0
    assert counters(api, boris["id"])["planned"] == 1
    bad = api.patch("/api/settings", json={"counter_mode": "nobody"})
    assert bad.status_code == 422


def test_incoming_counts_in_both_modes_and_employees(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    clock.now = START
    boss = create_user(api, "boss@example.com")
    anna = create_user(api, "anna@example.com")
    boris = create_user(api, "boris@example.com")
    for user in (anna, boris):
        assert (
            api.patch(f"/api/users/{user['id']}", json={"manager_id": boss["id"]}).status_code
            == 200
        )
    loop = api.patch(f"/api/users/{boss['id']}", json={"manager_id": anna["id"]})
    assert loop.status_code == 422
    card = create_card(api, anna["id"])
    task = activity(api, card_id=card["id"], responsible_id=boris["id"], subject="Quote")
    # Boris comments on an activity... no: Anna comments on Boris's task -> incoming for Boris
    api.post(
        f"/api/activities/{task['id']}/comments", json={"text": "Ping", "author_id": anna["id"]}
    )
    assert counters(api, boris["id"])["incoming"] == 1
    assert counters(api, anna["id"])["incoming"] == 0
    assert counters(api, boss["id"])["employees"] == {"incoming": 1, "planned": 0}
    api.patch("/api/settings", json={"counter_mode": "item_responsible"})
    assert counters(api, anna["id"])["incoming"] == 1  # it is on her card
    assert counters(api, boris["id"])["incoming"] == 0
    assert counters(api, boss["id"])["employees"] == {"incoming": 1, "planned": 0}
    in_progress = api.get("/api/activities", params={"subordinates_of": boss["id"]}).json()
    assert {a["responsible_id"] for a in in_progress["items"]} == {boris["id"]}
    assert len(in_progress["items"]) == 2  # the task and the incoming comment


def test_activity_on_several_cards_appears_in_each_history(
    api: httpx.Client, clock: FakeClock
) -> None:
    clock.now = START
    anna = create_user(api, "anna@example.com", "Anna")
    one = create_card(api, anna["id"], title="Client one")
    two = create_card(api, anna["id"], title="Client two")
    act = activity(api, card_ids=[one["id"], two["id"]], responsible_id=anna["id"], type="meeting")
    assert act["card_ids"] == [one["id"], two["id"]]
    api.post(
        f"/api/activities/{act['id']}/close",
        json={"status": "cancelled"},
        headers={"X-Acting-User": str(anna["id"])},
    )
    for card in (one, two):
        [entry] = history(api, card["id"])
        assert entry["type"] == "task_closed"
        assert entry["success"] is False
        assert entry["by"] == {"id": anna["id"], "name": "Anna"}
    reopened = api.post(f"/api/activities/{act['id']}/reopen").json()
    assert (reopened["is_open"], reopened["status"]) == (True, "scheduled")
    assert [e["type"] for e in history(api, one["id"])] == ["task_reopened", "task_closed"]


def test_edit_delete_and_bulk_actions_keep_counters_right(
    api: httpx.Client, clock: FakeClock
) -> None:
    clock.now = START
    anna = create_user(api, "anna@example.com")
    boris = create_user(api, "boris@example.com")
    card = create_card(api, anna["id"])
    overdue = START - timedelta(minutes=1)
    ids = [
        activity(api, card_id=card["id"], responsible_id=anna["id"], deadline=overdue)["id"]
        for _ in range(4)
    ]
    assert counters(api, anna["id"])["planned"] == 4
    edited = api.patch(f"/api/activities/{ids[0]}", json={"deadline": None, "subject": "Later"})
    assert (edited.json()["deadline"], edited.json()["subject"]) == (None, "Later")
    assert counters(api, anna["id"])["planned"] == 3
    assign = api.post(
        "/api/activities/bulk",
        json={"ids": ids[1:3], "action": "assign", "responsible_id": boris["id"]},
    )
    assert assign.json() == {"changed": 2}
    assert (counters(api, anna["id"])["planned"], counters(api, boris["id"])["planned"]) == (1, 2)
    api.post("/api/activities/bulk", json={"ids": ids[1:3], "action": "done"})
    assert counters(api, boris["id"])["planned"] == 0
    api.post("/api/activities/bulk", json={"ids": [ids[1]], "action": "not_done"})
    assert counters(api, boris["id"])["planned"] == 1
    api.post(
        "/api/activities/bulk",
        json={"ids": [ids[1]], "action": "edit", "changes": {"status": "postponed"}},
    )
    assert api.get(f"/api/activities/{ids[1]}").json()["status"] == "postponed"
    assert api.post("/api/activities/bulk", json={"ids": ids, "action": "delete"}).json() == {
        "changed": 4
    }
    assert api.get(f"/api/activities/{ids[0]}").status_code == 404
    assert counters(api, anna["id"])["planned"] == counters(api, boris["id"])["planned"] == 0
    # all or nothing: one unknown id and nothing is done
    again = activity(api, card_id=card["id"], responsible_id=anna["id"], deadline=overdue)
    failed = api.post("/api/activities/bulk", json={"ids": [again["id"], 999999], "action": "done"})
    assert failed.status_code == 404
    assert api.get(f"/api/activities/{again['id']}").json()["is_open"] is True


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"deadline": "2026-11-22T10:00:00"}, 422, "UTC offset"),
        ({"type": "teleport"}, 422, "unknown activity type 'teleport'"),
        ({"status": "done"}, 422, "cannot start as 'done'"),
        ({"card_id": None}, 422, "card_id or card_ids"),
        ({"responsible_id": 999}, 404, "user 999 does not exist"),
    ],
)
def test_bad_activity_input_gets_a_clear_error(
    api: httpx.Client, body: dict[str, Any], status: int, fragment: str
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    payload = {"card_id": card["id"], "type": "call", "responsible_id": anna["id"], **body}
    response = api.post("/api/activities", json=payload)
    assert response.status_code == status, response.text
    assert fragment in response.text


def test_filters(api: httpx.Client, clock: FakeClock) -> None:
    clock.now = START
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    early = activity(
        api,
        card_id=card["id"],
        responsible_id=anna["id"],
        type="meeting",
        deadline=START + timedelta(hours=1),
    )
    late = activity(
        api, card_id=card["id"], responsible_id=anna["id"], deadline=START + timedelta(days=2)
    )

    def ids(**params: Any) -> list[int]:
        return [a["id"] for a in api.get("/api/activities", params=params).json()["items"]]

    assert ids(type="meeting") == [early["id"]]
    assert ids(deadline_to=(START + timedelta(days=1)).isoformat()) == [early["id"]]
    assert ids(deadline_from=(START + timedelta(days=1)).isoformat()) == [late["id"]]
    assert ids(responsible_id=anna["id"]) == [early["id"], late["id"]]
    api.post(f"/api/activities/{late['id']}/close", json={})
    assert ids(is_open="false") == [late["id"]]
    assert ids(status="done") == [late["id"]]


def test_concurrent_closes_count_an_activity_down_once(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from crm_core import counters as counting
    from crm_core import user_cases
    from crm_core.company import COUNTER_MODES
    from crm_core.db import read_only

    clock.now = START
    anna = create_user(api, "anna@example.com")
    boris = create_user(api, "boris@example.com")
    card = create_card(api, anna["id"])
    task = activity(api, card_id=card["id"], responsible_id=anna["id"])
    api.post(f"/api/activities/{task['id']}/comments", json={"text": "?", "author_id": boris["id"]})
    [incoming] = [
        a
        for a in api.get("/api/activities", params={"type": "comment"}).json()["items"]
        if a["incoming"]
    ]
    assert counters(api, anna["id"])["incoming"] == 1
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda _: api.post(f"/api/activities/{incoming['id']}/close", json={}).status_code,
                range(4),
            )
        )
    assert results == [200] * 4
    assert counters(api, anna["id"])["incoming"] == 0
    assert [e["type"] for e in history(api, card["id"])] == ["task_closed"]
    with read_only(runtime.sessions) as session:
        for mode in COUNTER_MODES:
            fast = counting.read_counters(session, anna["id"], START, mode)
            user = user_cases.get_user(session, anna["id"])
            assert fast == counting.recount(session, user, mode, START)


def test_patch_to_a_closing_status_applies_the_other_fields_too(
    api: httpx.Client, clock: FakeClock
) -> None:
    clock.now = START
    anna = create_user(api, "anna@example.com")
    boris = create_user(api, "boris@example.com")
    card = create_card(api, anna["id"])
    act = activity(api, card_id=card["id"], responsible_id=anna["id"])
    patched = api.patch(
        f"/api/activities/{act['id']}",
        json={"status": "done", "responsible_id": boris["id"], "subject": "Called back"},
    ).json()
    assert (patched["status"], patched["is_open"]) == ("done", False)
    assert (patched["responsible_id"], patched["subject"]) == (boris["id"], "Called back")


def test_new_activities_start_in_the_first_open_status_of_the_list(
    api: httpx.Client, clock: FakeClock
) -> None:
    clock.now = START
    statuses = [
        {"name": "open", "closed": False},
        {"name": "finished", "closed": True, "success": True},
    ]
    assert api.patch("/api/settings", json={"activity_statuses": statuses}).status_code == 200
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    act = activity(api, card_id=card["id"], responsible_id=anna["id"])
    assert act["status"] == "open"
    closed = api.post(f"/api/activities/{act['id']}/close", json={"status": "finished"}).json()
    reopened = api.post(f"/api/activities/{closed['id']}/reopen").json()
    assert reopened["status"] == "open"
