"""Activities, counters, focus and unread through the HTTP API, with a controllable clock.

Seeds 000 (counters and their modes), 001 (focus, unread), 003 and 004 (activities).
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest import sweeper
from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.helpers import counters, create_card, create_user, history, wait_for
from tests.test_worker_kill import crm_ingest

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def activity(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    if isinstance(fields.get("deadline"), datetime):
        fields["deadline"] = fields["deadline"].isoformat()
    fields.setdefault("type", "call")
    fields.setdefault("subject", "Call John back")
    response = api.post("/api/activities", json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


def kanban_top(api: httpx.Client, stage: str = "new") -> dict[str, Any]:
    cards = api.get("/api/kanban", params={"entity_type": "deal", "stage": stage}).json()["cards"]
    return dict(cards[0])


def tick(runtime: Runtime, clock: FakeClock) -> int:
    """One round of the sweeper's focus clock at the test's time."""
    return sweeper.focus_due(runtime.sessions, clock())


def test_planned_focus_and_today_follow_the_deadline(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    clock.now = START
    anna = create_user(api, "anna@example.com")  # N = 15 minutes by default
    card = create_card(api, anna["id"], title="Acme")
    other = create_card(api, anna["id"], title="Other")
    deadline = START + timedelta(minutes=20)
    act = activity(api, card_id=card["id"], responsible_id=anna["id"], deadline=deadline)
    assert act["next_focus_at"] == "2026-11-22T09:05:00Z"
    api.post(f"/api/cards/{other['id']}/comments", json={"text": "hi", "author_id": anna["id"]})

    # Due in 20 minutes: not planned, nothing to focus yet
    assert counters(api, anna["id"])["planned"] == 0
    assert tick(runtime, clock) == 0

    # 15 minutes before: planned, and the card jumps to the top with that reason
    clock.advance(minutes=5)
    assert counters(api, anna["id"])["planned"] == 1
    assert counters(api, anna["id"])["today"] == 0  # not overdue yet
    assert tick(runtime, clock) == 1
    top = kanban_top(api)
    assert (top["id"], top["focus_reason"]) == (card["id"], "deadline in 15 min: Call John back")
    assert top["focus_at"] == "2026-11-22T09:05:00Z"

    # Another card is focused in between; at the deadline ours is on top again
    other_user = create_user(api, "boris@example.com")
    clock.advance(minutes=10)
    api.post(
        f"/api/cards/{other['id']}/comments", json={"text": "?", "author_id": other_user["id"]}
    )
    assert kanban_top(api)["id"] == other["id"]
    clock.advance(minutes=5)
    assert tick(runtime, clock) == 1
    top = kanban_top(api)
    assert (top["id"], top["focus_reason"]) == (card["id"], "deadline reached: Call John back")
    assert tick(runtime, clock) == 0  # each moment fires once
    # Overdue with a deadline today: planned and for today
    assert counters(api, anna["id"]) == {
        "incoming": 0,
        "planned": 1,
        "today": 1,
        "employees": {"incoming": 0, "planned": 0},
    }

    # Closing it drops it from every counter and writes the closed task in history
    closed = api.post(f"/api/activities/{act['id']}/close", json={"status": "succeeded"})
    assert closed.json()["is_open"] is False
    assert counters(api, anna["id"]) == {
        "incoming": 0,
        "planned": 0,
        "today": 0,
        "employees": {"incoming": 0, "planned": 0},
    }
    [entry] = history(api, card["id"])
    assert entry["type"] == "task_closed"
    assert (entry["status"], entry["success"], entry["subject"]) == (
        "succeeded",
        True,
        "Call John back",
    )


def test_a_users_own_n_sets_planned_and_the_focus_moment(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    clock.now = START
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    act = activity(
        api, card_id=card["id"], responsible_id=anna["id"], deadline=START + timedelta(hours=1)
    )
    assert counters(api, anna["id"])["planned"] == 0
    response = api.patch(f"/api/users/{anna['id']}", json={"planned_lead_minutes": 90})
    assert response.json()["planned_lead_minutes"] == 90
    assert counters(api, anna["id"])["planned"] == 1
    # The focus moment moved with N: inside the window now, so it is due at once
    assert api.get(f"/api/activities/{act['id']}").json()["next_focus_at"] == "2026-11-22T09:00:00Z"
    api.patch(f"/api/users/{anna['id']}", json={"planned_lead_minutes": 30})  # not fired yet
    assert api.get(f"/api/activities/{act['id']}").json()["next_focus_at"] == "2026-11-22T09:30:00Z"


def test_for_today_follows_the_users_time_zone_across_midnight(
    api: httpx.Client, clock: FakeClock
) -> None:
    tokyo = api.post(
        "/api/users", json={"email": "kenji@example.com", "name": "Kenji", "timezone": "Asia/Tokyo"}
    ).json()
    london = api.post(
        "/api/users", json={"email": "liz@example.com", "name": "Liz", "timezone": "Europe/London"}
    ).json()
    # 14:00 UTC is 23:00 in Tokyo and 14:00 in London, on 22 November for both.
    deadline = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
    clock.now = deadline - timedelta(hours=1)
    for user in (tokyo, london):
        card = create_card(api, user["id"])
        activity(api, card_id=card["id"], responsible_id=user["id"], deadline=deadline)
    clock.now = datetime(2026, 11, 22, 14, 30, tzinfo=UTC)  # 23:30 in Tokyo
    assert counters(api, tokyo["id"])["today"] == 1
    assert counters(api, london["id"])["today"] == 1
    clock.now = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)  # 00:30 on the 23rd in Tokyo
    assert counters(api, tokyo["id"])["today"] == 0
    assert counters(api, tokyo["id"])["planned"] == 1  # still overdue
    assert counters(api, london["id"])["today"] == 1


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


def test_comments_focus_and_unread_only_when_by_someone_else(
    api: httpx.Client, clock: FakeClock
) -> None:
    clock.now = START
    anna = create_user(api, "anna@example.com", "Anna")
    boris = create_user(api, "boris@example.com", "Boris")
    card = create_card(api, anna["id"])
    own = api.post(
        f"/api/cards/{card['id']}/comments", json={"text": "note", "author_id": anna["id"]}
    )
    assert own.status_code == 201
    shown = api.get(f"/api/cards/{card['id']}").json()
    assert (shown["unread"], shown["focus_reason"]) == (False, None)
    clock.advance(minutes=1)
    api.post(
        f"/api/cards/{card['id']}/comments",
        json={"text": "Customer called"},
        headers={"X-Acting-User": str(boris["id"])},
    )
    shown = api.get(f"/api/cards/{card['id']}").json()
    assert (shown["unread"], shown["focus_reason"]) == (True, "comment by Boris")
    assert shown["focus_at"] == "2026-11-22T09:01:00Z"
    # Opening the card as its responsible clears unread; "mark unread" sets it again
    opened = api.get(f"/api/cards/{card['id']}", headers={"X-Acting-User": str(anna["id"])})
    assert opened.json()["unread"] is False
    assert api.get(f"/api/cards/{card['id']}").json()["unread"] is False
    api.post(f"/api/cards/{card['id']}/unread")
    assert api.get(f"/api/cards/{card['id']}").json()["unread"] is True
    api.post(f"/api/cards/{card['id']}/read")
    assert api.get(f"/api/cards/{card['id']}").json()["unread"] is False
    listed = api.get(f"/api/cards/{card['id']}/comments").json()["items"]
    assert [c["text"] for c in listed] == ["Customer called", "note"]
    nobody = api.post(f"/api/cards/{card['id']}/comments", json={"text": "x"})
    assert nobody.status_code == 422


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


def test_the_deadline_focus_fires_in_a_sweeper_started_after_the_schedule(
    api: httpx.Client, runtime: Runtime, clock: FakeClock, tmp_path: Path
) -> None:
    """Real time, real process: the moment is stored first, the sweeper starts afterwards
    (as after a restart) and still focuses the card."""
    clock.now = datetime.now(UTC)
    anna = create_user(api, "anna@example.com")
    api.patch(f"/api/users/{anna['id']}", json={"planned_lead_minutes": 0})
    card = create_card(api, anna["id"])
    deadline = clock.now + timedelta(seconds=2)
    activity(api, card_id=card["id"], responsible_id=anna["id"], deadline=deadline)
    assert api.get(f"/api/cards/{card['id']}").json()["focus_reason"] is None
    sweeper_process = crm_ingest("sweeper", runtime, tmp_path)
    try:
        reason = wait_for(
            lambda: api.get(f"/api/cards/{card['id']}").json()["focus_reason"],
            timeout=60,
            what="the deadline focus",
        )
    finally:
        sweeper_process.send_signal(signal.SIGTERM)
        assert sweeper_process.wait(timeout=30) == 0
    assert reason == "deadline reached: Call John back"
    focused_at = datetime.fromisoformat(api.get(f"/api/cards/{card['id']}").json()["focus_at"])
    assert focused_at >= deadline


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


def test_the_before_focus_fires_once_even_when_n_changes(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    clock.now = START
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    act = activity(
        api, card_id=card["id"], responsible_id=anna["id"], deadline=START + timedelta(minutes=20)
    )
    clock.advance(minutes=5)
    assert tick(runtime, clock) == 1  # 15 minutes before
    clock.advance(minutes=4)
    api.patch(f"/api/users/{anna['id']}", json={"planned_lead_minutes": 5})
    assert api.get(f"/api/activities/{act['id']}").json()["next_focus_at"] == "2026-11-22T09:20:00Z"
    clock.advance(minutes=6)  # 5 minutes before, under the new N: already fired, not again
    assert tick(runtime, clock) == 0
    clock.advance(minutes=5)
    assert tick(runtime, clock) == 1  # the deadline itself
    assert kanban_top(api)["focus_reason"] == "deadline reached: Call John back"


def test_an_activity_due_inside_the_window_is_focused_at_once(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    clock.now = START
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    activity(
        api, card_id=card["id"], responsible_id=anna["id"], deadline=START + timedelta(minutes=10)
    )
    assert tick(runtime, clock) == 1
    assert kanban_top(api)["focus_reason"] == "deadline in 10 min: Call John back"


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
