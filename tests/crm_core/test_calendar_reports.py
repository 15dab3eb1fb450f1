"""Calendars (day/week/month, several users, an iCalendar feed read back with the icalendar
library, its secret kept out of the access log), activity reports in JSON and CSV, and bad
parameters answered 422.

SPEC "History", "Access rights", "Calendar"; seeds 002, 003, 004.
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest

from ingest.runtime import Runtime
from tests.conftest import API_TOKEN, FakeClock
from tests.support.helpers import (
    create_card,
    create_user,
)

PARIS = ZoneInfo("Europe/Paris")


def make_activity(
    api: httpx.Client, card_id: int, user_id: int, deadline: datetime, subject: str
) -> dict[str, Any]:
    response = api.post(
        "/api/activities",
        json={
            "card_id": card_id,
            "type": "meeting",
            "subject": subject,
            "responsible_id": user_id,
            "deadline": deadline.isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_calendar_views_side_by_side(api: httpx.Client, runtime: Runtime) -> None:
    anna = create_user(api, "anna@example.com")  # Europe/Paris
    boris = create_user(api, "boris@example.com")
    card = create_card(api, anna["id"])
    # Wednesday 25 November 2026, Paris time
    monday = datetime(2026, 11, 23, tzinfo=PARIS)
    a1 = make_activity(api, card["id"], anna["id"], monday + timedelta(days=2, hours=9), "Demo")
    b1 = make_activity(
        api, card["id"], boris["id"], monday + timedelta(days=2, hours=23, minutes=30), "Late call"
    )
    make_activity(api, card["id"], anna["id"], monday + timedelta(days=7), "Next week")
    make_activity(api, card["id"], anna["id"], monday + timedelta(days=40), "Next year")

    def view(kind: str, day: str) -> dict[str, Any]:
        response = api.get(
            "/api/calendar",
            params={"users": f"{anna['id']},{boris['id']}", "view": kind, "from": day},
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    day = view("day", "2026-11-25")
    assert [[a["id"] for a in u["activities"]] for u in day["users"]] == [[a1["id"]], [b1["id"]]]
    assert datetime.fromisoformat(day["start"]) == datetime(2026, 11, 25, tzinfo=PARIS)
    week = view("week", "2026-11-26")
    assert datetime.fromisoformat(week["start"]) == monday
    assert [len(u["activities"]) for u in week["users"]] == [1, 1]
    month = view("month", "2026-11-02")
    assert [len(u["activities"]) for u in month["users"]] == [2, 1]
    bad = api.get("/api/calendar", params={"users": "1", "view": "year"})
    assert bad.status_code == 422


def test_icalendar_feed_for_calendar_clients(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com", "Anna")
    boris = create_user(api, "boris@example.com", "Boris")
    card = create_card(api, anna["id"])
    deadline = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # 10:00 in Paris
    demo = make_activity(api, card["id"], anna["id"], deadline, "Demo for Acme")
    make_activity(api, card["id"], boris["id"], deadline, "Boris's call")
    # Done 200 days ago: out of the feed; still open after 120 days: in it
    old = make_activity(api, card["id"], anna["id"], deadline - timedelta(days=200), "Long ago")
    today = clock.now
    clock.now = today - timedelta(days=200)
    assert api.post(f"/api/activities/{old['id']}/close", json={}).status_code == 200
    clock.now = today
    make_activity(api, card["id"], anna["id"], deadline - timedelta(days=120), "Still to do")

    feed = api.post(f"/api/users/{anna['id']}/calendar-feed").json()["url"]
    path = feed.split("://", 1)[1].split("/", 1)[1]
    anonymous = httpx.Client(base_url=str(api.base_url), timeout=10)  # no bearer token
    try:
        response = anonymous.get("/" + path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/calendar")
        parsed: Any = icalendar.Calendar.from_ical(response.content)
        events: list[Any] = list(parsed.walk("VEVENT"))
        assert [str(e["SUMMARY"]) for e in events] == ["Still to do", "Demo for Acme"]
        event = events[1]
        assert event["DTSTAMP"].dt.utcoffset() == timedelta(0)
        start = event["DTSTART"].dt
        assert isinstance(start, datetime)
        assert start == deadline and start.utcoffset() == timedelta(hours=1)
        assert (
            str(start.tzinfo) == "Europe/Paris"
            and event["DTSTART"].params["TZID"] == "Europe/Paris"
        )
        assert str(event["UID"]).startswith(f"activity-{demo['id']}@")
        assert [str(t["TZID"]) for t in parsed.walk("VTIMEZONE")] == ["Europe/Paris"]
        # A wrong or old secret is no feed at all
        wrong = anonymous.get(f"/calendar/{anna['id']}.ics", params={"token": "guess"})
        assert wrong.status_code == 404
        api.post(f"/api/users/{anna['id']}/calendar-feed")
        assert anonymous.get("/" + path).status_code == 404
    finally:
        anonymous.close()
    assert API_TOKEN not in feed


def test_activity_report_in_json_and_csv(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com", "Anna")
    boris = create_user(api, "boris@example.com", "Boris")
    card = create_card(api, anna["id"])
    for user, kind in ((anna, "call"), (anna, "call"), (boris, "meeting")):
        api.post(
            "/api/activities",
            json={"card_id": card["id"], "type": kind, "responsible_id": user["id"]},
        )
    done = api.get("/api/activities", params={"responsible_id": boris["id"]}).json()["items"][0]
    api.post(f"/api/activities/{done['id']}/close", json={})
    period = {
        "since": (clock() - timedelta(hours=1)).isoformat(),
        "until": (clock() + timedelta(hours=1)).isoformat(),
    }
    rows = api.get("/api/reports/activities", params=period).json()["rows"]
    assert [(r["type"], r["status"], r["responsible"], r["count"]) for r in rows] == [
        ("call", "scheduled", "Anna", 2),
        ("meeting", "done", "Boris", 1),
    ]
    as_csv = api.get("/api/reports/activities", params={**period, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(as_csv.text)))
    assert table[0] == ["type", "status", "responsible_id", "responsible", "count"]
    assert table[1:] == [
        ["call", "scheduled", str(anna["id"]), "Anna", "2"],
        ["meeting", "done", str(boris["id"]), "Boris", "1"],
    ]
    earlier = {"since": "2020-01-01T00:00:00Z", "until": "2020-02-01T00:00:00Z"}
    assert api.get("/api/reports/activities", params=earlier).json()["rows"] == []


def test_bad_parameters_get_422_not_500(api: httpx.Client, runtime: Runtime) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    users = str(anna["id"])
    for params in (
        {"users": users, "from": "9999-12-31"},
        {"users": users, "from": "0001-01-01", "view": "week"},
        {"users": users, "timezone": "America"},
        {"users": users, "timezone": "Mars/Olympus_Mons"},
        {"users": users, "timezone": "x" * 300},
        {"users": users, "from": "2026-11-30", "to": "2026-11-01"},
    ):
        response = api.get("/api/calendar", params=params)
        assert response.status_code == 422, (params, response.text)
    naive = api.get(f"/api/cards/{card['id']}/history", params={"since": "2026-11-01T00:00:00"})
    assert naive.status_code == 422 and "UTC offset" in naive.text
    ghost = api.patch(
        f"/api/cards/{card['id']}", json={"stage": "x"}, headers={"X-Acting-User": "999"}
    )
    assert ghost.status_code == 404 and "X-Acting-User" in ghost.json()["detail"]
    for path in ("/api/cards/99999999999999999999", "/api/documents/99999999999999999999/content"):
        assert api.get(path).status_code in (404, 422), path
    assert api.get("/calendar/99999999999999999999.ics", params={"token": "x"}).status_code in (
        404,
        422,
    )


def test_the_feed_secret_stays_out_of_the_access_log(
    api: httpx.Client, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    anna = create_user(api, "anna@example.com")
    url = api.post(f"/api/users/{anna['id']}/calendar-feed").json()["url"]
    secret = url.split("token=")[1]
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        assert api.get(f"/calendar/{anna['id']}.ics", params={"token": secret}).status_code == 200
    logged = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any(".ics" in line for line in logged) and not any(secret in line for line in logged)
