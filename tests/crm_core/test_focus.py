"""Focus, planned, for-today and unread through the HTTP API, with a controllable clock: the
deadline and the user's own N, time zones across midnight, the sweeper's focus clock, and
comments that focus a card only when by someone else.

Seeds 001 (focus, unread), 003 and 004 (activities).
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from ingest import sweeper
from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.support.activities import START, activity
from tests.support.helpers import counters, create_card, create_user, history, wait_for
from tests.support.workers import crm_ingest


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
