"""Calls over real HTTP: sources, signatures, every outcome, numbers written four ways, the
unmatched list, the "which card" rule, Twilio Voice status callbacks, a batch of 1,000.

SPEC "Calls (call-log sync)" and "Which card?"; seeds 000, 001, 002.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crm_core.models import HistoryEntry
from ingest.runtime import Runtime
from ingest.signatures import sign_timestamped
from tests.conftest import FakeClock
from tests.support.calllog import (
    CUSTOMER,
    TWILIO_NO_ANSWER,
    all_done,
    call,
    card_with_phone,
    post_signed,
    post_twilio_form,
    source,
    stored_count,
)
from tests.support.helpers import counters, create_user, history, wait_for
from tests.support.locks import database_write_locked

WRITTEN = ["06 12 34 56 78", "+33 6 12 34 56 78", "0033612345678", "+33-6-12-34-56-78"]


def test_every_outcome_lands_on_the_callers_card(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    quiet = card_with_phone(api, anna["id"], "+33 1 40 00 00 00", title="Quiet deal")
    target = card_with_phone(api, anna["id"])
    hook = source(api)
    assert hook["hook_url"].endswith(f"/hooks/calllog/{hook['id']}")
    # Listing the source never shows its secret again
    listed = api.get("/api/sources").json()["items"]
    assert [s["id"] for s in listed] == [hook["id"]] and "secret" not in listed[0]

    # Incoming calls, one of each outcome, the customer's number written four ways
    outcomes = ["answered", "missed", "rejected", "voicemail", "busy", "blocked"]
    batch = [
        call(WRITTEN[n % 4], f"in-{outcome}", anna["email"], outcome=outcome, duration_seconds=n)
        for n, outcome in enumerate(outcomes)
    ]
    batch[0]["recording_url"] = "https://recordings.example.com/in-answered.mp3"
    response = post_signed(api, hook, {"calls": batch}, clock)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 6 and response.json()["rejected"] == []
    wait_for(lambda: all_done(api, 6), what="six calls processed")

    entries = {e["call_id"]: e for e in history(api, target["id"]) if e["type"] == "call"}
    assert set(entries) == {f"in-{o}" for o in outcomes}
    answered = entries["in-answered"]
    assert answered["direction"] == "incoming" and answered["number"] == "+33612345678"
    assert answered["employee"]["address"] == "anna@example.com"
    assert answered["recording_url"] == "https://recordings.example.com/in-answered.mp3"
    assert entries["in-busy"]["duration_seconds"] == 4
    assert history(api, quiet["id"]) == []
    # Every call but the blocked one needs attention: five incoming activities
    assert counters(api, anna["id"])["incoming"] == 5
    card = api.get(f"/api/cards/{target['id']}").json()
    assert card["unread"] is True
    assert card["focus_reason"] in {"missed call", "incoming call"}
    assert [c["phones"] for c in card["contacts"]] == [["+33612345678"]]  # one contact
    top = api.get("/api/kanban", params={"entity_type": "deal", "stage": "new"}).json()["cards"]
    assert [c["id"] for c in top] == [target["id"], quiet["id"]]
    missed = api.get("/api/activities", params={"type": "missed_call"}).json()["items"]
    assert len(missed) == 4 and all(a["is_open"] for a in missed)

    # An unanswered call back changes nothing; an answered one closes the four missed calls
    post_signed(
        api,
        hook,
        call(WRITTEN[3], "out-1", anna["id"], direction="outgoing", outcome="busy"),
        clock,
    )
    wait_for(lambda: all_done(api, 7), what="the unanswered call back")
    assert counters(api, anna["id"])["incoming"] == 5
    post_signed(
        api,
        hook,
        call(WRITTEN[2], "out-2", anna["id"], direction="outgoing", outcome="answered"),
        clock,
    )
    wait_for(lambda: all_done(api, 8), what="the call back")
    assert counters(api, anna["id"])["incoming"] == 1  # the answered incoming call remains
    closed = [e for e in history(api, target["id"]) if e["type"] == "task_closed"]
    assert len(closed) == 4
    back = next(e for e in history(api, target["id"]) if e.get("call_id") == "out-2")
    assert sorted(back["called_back"]) == sorted(a["id"] for a in missed)


def test_signatures_and_replays(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    target = card_with_phone(api, anna["id"])
    hook = source(api)
    payload = call(CUSTOMER, "c-1", anna["email"])
    now = int(clock().timestamp())

    wrong_secret = post_signed(api, hook, payload, clock, secret="not-the-secret")
    changed = post_signed(api, hook, payload, clock, body=json.dumps({**payload, "x": 1}).encode())
    stale = post_signed(api, hook, payload, clock, timestamp=now - 301)
    future = post_signed(api, hook, payload, clock, timestamp=now + 301)
    unsigned = api.post(hook["hook_url"], json=payload)
    for response in (wrong_secret, changed, stale, future, unsigned):
        assert response.status_code == 401, response.text
    assert "X-Timestamp" in stale.json()["detail"]
    assert stored_count(runtime) == 0

    # Just within the skew: accepted; the same request again: 202, the same item, nothing new
    first = post_signed(api, hook, payload, clock, timestamp=now - 299)
    assert first.status_code == 202
    wait_for(lambda: all_done(api, 1), what="the call")
    before = (history(api, target["id"]), counters(api, anna["id"]))
    again = post_signed(api, hook, payload, clock, timestamp=now - 299)
    assert again.status_code == 202 and again.json()["ids"] == first.json()["ids"]
    time.sleep(0.5)
    assert (history(api, target["id"]), counters(api, anna["id"])) == before
    assert stored_count(runtime) == 1

    # A revoked source, or one that never existed: 404, nothing stored
    assert api.delete(f"/api/sources/{hook['id']}").status_code == 204
    revoked = post_signed(api, hook, call(CUSTOMER, "c-2", anna["email"]), clock)
    assert revoked.status_code == 404
    ghost = post_signed(api, {**hook, "hook_url": "/hooks/calllog/999"}, payload, clock)
    assert ghost.status_code == 404
    assert stored_count(runtime) == 1


def test_bad_input_is_named_and_a_batch_keeps_its_good_calls(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    hook = source(api)
    # The signature is over the bytes sent: sign the broken body itself
    stamp = str(int(clock().timestamp()))
    not_json = api.post(
        hook["hook_url"],
        content=b"{not json",
        headers={
            "X-Timestamp": stamp,
            "X-Signature": sign_timestamped(hook["secret"], stamp, b"{not json"),
        },
    )
    assert not_json.status_code == 422 and not_json.json()["detail"].startswith("body: not JSON")
    no_offset = post_signed(
        api, hook, call(CUSTOMER, "c-1", anna["id"], started_at="2026-11-22T10:15:00"), clock
    )
    assert no_offset.status_code == 422
    assert no_offset.json()["detail"] == "started_at: Input should have timezone info"
    bad_number = post_signed(api, hook, call("call me maybe", "c-2", anna["id"]), clock)
    assert bad_number.status_code == 422 and bad_number.json()["detail"].startswith("number:")
    too_many = post_signed(
        api, hook, {"calls": [call(CUSTOMER, f"c{n}", anna["id"]) for n in range(1001)]}, clock
    )
    assert too_many.status_code == 422
    assert too_many.json()["detail"] == "calls: at most 1000 calls per request"
    assert stored_count(runtime) == 0

    mixed = post_signed(
        api,
        hook,
        {
            "calls": [
                call(CUSTOMER, "good-1", anna["id"]),
                call(CUSTOMER, "bad-1", anna["id"], outcome="lost"),
                call(WRITTEN[0], "good-2", anna["id"]),
            ]
        },
        clock,
    )
    assert mixed.status_code == 202
    assert mixed.json()["accepted"] == 2
    [rejected] = mixed.json()["rejected"]
    assert rejected["index"] == 1 and rejected["call_id"] == "bad-1"
    assert rejected["error"].startswith("calls[1].outcome:")
    assert stored_count(runtime) == 2


@pytest.mark.settings(db_lock_timeout_seconds=1.0)  # the write lock is held on purpose
def test_a_store_failure_answers_503_and_keeps_nothing(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    hook = source(api)
    with database_write_locked(runtime.engine):
        response = post_signed(api, hook, call(CUSTOMER, "c-1", anna["id"]), clock)
    assert response.status_code == 503, response.text
    assert "try again" in response.json()["detail"]
    assert stored_count(runtime) == 0


def test_unknown_number_waits_in_the_unmatched_list_until_attached(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    target = card_with_phone(api, anna["id"], "+33 1 40 00 00 00")
    hook = source(api)
    post_signed(api, hook, call("+44 20 7946 0958", "stranger", anna["id"]), clock)
    wait_for(lambda: all_done(api, 1), what="the call")
    [waiting] = api.get("/api/unmatched").json()["items"]
    assert waiting["status"] == "unmatched" and "no open card" in waiting["reason"]
    assert counters(api, anna["id"])["incoming"] == 0

    attached = api.post(f"/api/unmatched/{waiting['id']}/attach", json={"card_id": target["id"]})
    assert attached.status_code == 200, attached.text
    assert attached.json()["status"] == "processed"
    assert attached.json()["card_id"] == target["id"]
    assert [e["call_id"] for e in history(api, target["id"])] == ["stranger"]
    assert counters(api, anna["id"])["incoming"] == 1
    card = api.get(f"/api/cards/{target['id']}").json()
    assert "+442079460958" in [p for c in card["contacts"] for p in c["phones"]]
    assert api.get("/api/unmatched").json()["items"] == []
    again = api.post(f"/api/unmatched/{waiting['id']}/attach", json={"card_id": target["id"]})
    assert again.status_code == 409
    unknown_employee = post_signed(api, hook, call(CUSTOMER, "x", "nobody@example.com"), clock)
    assert unknown_employee.status_code == 202
    wait_for(lambda: all_done(api, 2), what="the call of an unknown employee")
    rejected = api.get("/api/inbound", params={"status": "rejected"}).json()["items"]
    assert "nobody@example.com" in rejected[0]["reason"]


def test_the_open_card_with_the_latest_activity_gets_the_call(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    older = card_with_phone(api, anna["id"], title="Older deal")
    newer = card_with_phone(api, anna["id"], title="Newer deal")
    hook = source(api)
    post_signed(api, hook, call(CUSTOMER, "c-1", anna["id"]), clock)
    wait_for(lambda: all_done(api, 1), what="the first call")
    assert [len(history(api, c["id"])) for c in (older, newer)] == [0, 1]
    # The newer deal is won: the next call goes to the contact's other, open deal
    won = api.patch(f"/api/cards/{newer['id']}", json={"outcome": "won"})
    assert won.json()["outcome"] == "won"
    post_signed(api, hook, call(CUSTOMER, "c-2", anna["id"]), clock)
    wait_for(lambda: all_done(api, 2), what="the second call")
    calls = [
        [e["call_id"] for e in history(api, c["id"]) if e["type"] == "call"] for c in (older, newer)
    ]
    assert calls == [["c-2"], ["c-1"]]
    # (the newer deal's history also shows it was won: a field change)
    assert [e["type"] for e in history(api, newer["id"])].count("field_change") == 1


def post_twilio(
    api: httpx.Client, hook: dict[str, Any], params: dict[str, str], token: str
) -> httpx.Response:
    return post_twilio_form(api, f"/hooks/calllog/{hook['id']}", params, token)


def test_twilio_voice_status_callbacks(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    target = card_with_phone(api, anna["id"])
    hook = source(
        api,
        kind="twilio_voice",
        name="Twilio",
        auth_token="twilio-auth-token",
        public_base_url="https://crm.example.com",
        employees={"+1 (415) 555-0100": anna["email"]},
    )
    assert hook["secret"] is None
    assert "auth_token" not in json.dumps(api.get(f"/api/sources/{hook['id']}").json())

    forged = post_twilio(api, hook, TWILIO_NO_ANSWER, "another-token")
    assert forged.status_code == 401 and stored_count(runtime) == 0
    ringing = post_twilio(
        api, hook, {**TWILIO_NO_ANSWER, "CallStatus": "ringing"}, "twilio-auth-token"
    )
    assert ringing.status_code == 202 and ringing.json()["accepted"] == 0
    assert "progress report" in ringing.json()["ignored"] and stored_count(runtime) == 0

    response = post_twilio(api, hook, TWILIO_NO_ANSWER, "twilio-auth-token")
    assert response.status_code == 202, response.text
    wait_for(lambda: all_done(api, 1), what="the Twilio call")
    [entry] = history(api, target["id"])
    assert (entry["outcome"], entry["direction"], entry["provider"]) == (
        "missed",
        "incoming",
        "twilio",
    )
    assert entry["call_id"] == TWILIO_NO_ANSWER["CallSid"]
    assert entry["occurred_at"] == "2026-11-22T09:15:00Z"
    assert counters(api, anna["id"])["incoming"] == 1

    # Anna calls back through Twilio: answered, 95 s; the missed call is closed
    back = {
        **TWILIO_NO_ANSWER,
        "CallSid": "CA0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "CallStatus": "completed",
        "CallDuration": "95",
        "Direction": "outbound-api",
        "From": "+14155550100",
        "To": "+33612345678",
    }
    assert post_twilio(api, hook, back, "twilio-auth-token").status_code == 202
    wait_for(lambda: all_done(api, 2), what="the call back")
    assert counters(api, anna["id"])["incoming"] == 0
    latest = history(api, target["id"])[0]
    assert latest["type"] in {"call", "task_closed"}
    outgoing = next(e for e in history(api, target["id"]) if e.get("direction") == "outgoing")
    assert outgoing["duration_seconds"] == 95 and outgoing["outcome"] == "answered"


@pytest.mark.timeout(300)
def test_a_batch_of_1000_calls(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    numbers = [f"+33 6 12 34 {n // 100:02d} {n % 100:02d}" for n in range(50)]
    cards = [
        card_with_phone(api, anna["id"], number, title=f"Deal {n}")
        for n, number in enumerate(numbers)
    ]
    hook = source(api)
    batch = [call(numbers[n % 50], f"bulk-{n}", anna["id"]) for n in range(1000)]
    started = time.perf_counter()
    response = post_signed(api, hook, {"calls": batch}, clock)
    accepted = time.perf_counter() - started
    assert response.status_code == 202 and response.json()["accepted"] == 1000
    wait_for(lambda: all_done(api, 1000), timeout=240, what="1,000 calls processed")
    total = time.perf_counter() - started
    print(
        f"\n1,000 calls: accepted in {accepted:.2f} s, processed end to end in {total:.2f} s"
        f" ({1000 / total:.0f} calls/s)"
    )
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(HistoryEntry)) == 1000
    assert counters(api, anna["id"])["incoming"] == 1000
    assert {len(history(api, c["id"])) for c in cards[:3]} == {20}


def test_the_hook_format_is_documented_in_openapi(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    hook = spec["paths"]["/hooks/calllog/{source_id}"]["post"]
    body = hook["requestBody"]
    assert "X-Signature" in body["description"]
    example = body["content"]["application/json"]["examples"]["one call"]["value"]
    assert example["direction"] == "incoming" and example["started_at"].endswith("+01:00")
    assert "401" in hook["responses"]
