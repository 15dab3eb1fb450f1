"""The chat hook whatever the channel: the seed's postponed deal that a customer's WhatsApp
message brings back to the top, hostile requests answered clearly with nothing stored, odd
but valid messages processed, and the hook in the OpenAPI document.

SPEC "Chat, WhatsApp, SMS" and "Which card?"; seeds 000, 001, 002.
"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx

from crm_core.models import utcnow
from ingest.runtime import Runtime
from ingest.signatures import (
    hub_signature,
)
from tests.conftest import FakeClock
from tests.support.calllog import all_done, card_with_phone, source, stored_count
from tests.support.chat import (
    APP_SECRET,
    CUSTOMER_WA,
    JOHN,
    PROFILE,
    card,
    comment,
    from_customer,
    kanban,
    path_of,
    post_whatsapp,
    post_widget,
    visitor_message,
    webhook,
    whatsapp_source,
)
from tests.support.helpers import counters, create_user, history, wait_for

# --- the seed's story ------------------------------------------------------------------


def test_a_postponed_deal_comes_back_to_the_top_when_the_customer_writes(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    """Seed 001: "The deal was postponed by a month at the customer's request. There was
    nothing to do in it, so it sank in the Kanban. When the customer writes a message, the
    deal goes straight to the top and the customer's card shows Unread." """
    anna = create_user(api, "anna@example.com")
    bob = create_user(api, "bob@example.com")
    postponed = card_with_phone(api, anna["id"], "+33 6 12 34 56 78", title="Postponed deal")
    hook = whatsapp_source(api)
    # The deal was active once, then postponed by a month: the call is planned in 30 days
    first = webhook(
        contacts=PROFILE,
        messages=[from_customer("wamid.OLD", "text", {"body": "Call me in a month"})],
    )
    post_whatsapp(api, hook, first)
    wait_for(lambda: all_done(api, 1), what="the old message")
    [old] = api.get("/api/activities", params={"card_id": postponed["id"]}).json()["items"]
    assert api.post(f"/api/activities/{old['id']}/close", json={}).status_code == 200
    planned = api.post(
        "/api/activities",
        json={
            "card_id": postponed["id"],
            "type": "call",
            "subject": "Call back about the offer",
            "responsible_id": anna["id"],
            "deadline": (clock() + timedelta(days=30)).isoformat(),
            "status": "postponed",
        },
    )
    assert planned.status_code == 201, planned.text
    assert api.post(f"/api/cards/{postponed['id']}/read").status_code in (200, 204)
    # Meanwhile the other deals move: it sinks to the bottom of its column
    others = [
        card_with_phone(api, anna["id"], f"+33 1 40 00 00 0{n}", title=f"Busy deal {n}")
        for n in range(3)
    ]
    for other in others:
        comment(api, clock, other["id"], bob["id"])
    assert kanban(api) == [c["id"] for c in reversed(others)] + [postponed["id"]]
    assert card(api, postponed["id"])["unread"] is False
    before = counters(api, anna["id"])["incoming"]

    # When the customer writes on WhatsApp
    news = webhook(
        contacts=PROFILE,
        messages=[
            from_customer(
                "wamid.NEW",
                "text",
                {"body": "We are ready to sign"},
                timestamp=str(int(utcnow().timestamp())),
            )
        ],
    )
    assert post_whatsapp(api, hook, news).status_code == 200
    wait_for(lambda: all_done(api, 2), what="the customer's message")

    # Then the deal is on top, unread, and counted
    assert kanban(api)[0] == postponed["id"]
    shown = card(api, postponed["id"])
    assert shown["unread"] is True and shown["focus_reason"] == "incoming WhatsApp message"
    assert counters(api, anna["id"])["incoming"] == before + 1
    latest = next(e for e in history(api, postponed["id"]) if e["type"] == "whatsapp")
    assert latest["text"] == "We are ready to sign"


def test_the_chat_hook_is_documented_in_openapi(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    hook = spec["paths"]["/hooks/chat/{source_id}"]
    body = hook["post"]["requestBody"]
    assert "X-Hub-Signature-256" in body["description"]
    assert "X-Twilio-Signature" in body["description"]
    example = body["content"]["application/json"]["examples"]["a visitor's message"]["value"]
    assert example["visitor"]["id"] == "v-42"
    assert "get" in hook


# --- hostile and odd input ------------------------------------------------------------


def test_hostile_requests_get_a_clear_answer_and_store_nothing(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    create_user(api, "anna@example.com")
    widget = source(api, kind="widget", name="Website chat")
    whatsapp = whatsapp_source(api)
    message = visitor_message("w-1", visitor=JOHN)
    raw = json.dumps(message).encode()

    def signed(stamp: bytes) -> httpx.Response:
        return api.post(
            path_of(widget),
            content=raw,
            headers={b"X-Timestamp": stamp, b"X-Signature": b"sha256=00"},
        )

    assert signed(b"9" * 400).status_code == 401
    assert signed("²³".encode()).status_code == 401
    assert post_widget(api, {"id": 99999999999999999999}, message, clock, "x").status_code == 404
    assert api.get("/hooks/chat/99999999999999999999").status_code == 404
    huge = api.post(path_of(widget), content=b"x" * (6 * 1024 * 1024))
    assert huge.status_code == 413 and "larger than" in huge.json()["detail"]
    cases = {
        "sent_at: Value error, must be between 1970 and 2200": visitor_message(
            "w-2", visitor=JOHN, sent_at="0001-01-01T00:00:00+01:00"
        ),
        "employee": visitor_message("w-3", visitor=JOHN, direction="outgoing", employee=10**40),
    }
    for expected, payload in cases.items():
        response = post_widget(api, widget, payload, clock)
        assert response.status_code == 422 and response.json()["detail"].startswith(expected)

    def whatsapp_body(body: bytes) -> httpx.Response:
        return api.post(
            path_of(whatsapp),
            content=body,
            headers={"X-Hub-Signature-256": hub_signature(APP_SECRET, body)},
        )

    deep = b"[" * 100_000 + b"]" * 100_000
    big_number = b'{"object": ' + b"9" * 5000 + b"}"
    for body in (deep, big_number, b"\xff\xfe"):
        response = whatsapp_body(body)
        assert response.status_code == 422 and response.json()["detail"].startswith(
            "body: not JSON"
        )
    far = from_customer("wamid.FAR", "text", {"body": "Hi"}, timestamp="999999999999")
    response = post_whatsapp(api, whatsapp, webhook(messages=[far]))
    assert response.status_code == 422 and "timestamp" in response.json()["detail"]
    assert stored_count(runtime) == 0


def test_odd_but_valid_messages_are_processed_not_failed(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    deal = card_with_phone(api, anna["id"])
    widget = source(api, kind="widget", name="Website chat")
    whatsapp = whatsapp_source(api)
    with_nul = visitor_message("w-nul", "before\x00after", visitor={**JOHN, "phone": "0612345678"})
    assert post_widget(api, widget, with_nul, clock).status_code == 202
    odd_profiles = webhook(
        contacts=[{"wa_id": CUSTOMER_WA, "profile": "not an object"}, 5],
        messages=[from_customer("wamid.ODD", "text", {"body": "x" * 5})],
    )
    assert post_whatsapp(api, whatsapp, odd_profiles).status_code == 200
    long_name = webhook(
        contacts=[{"wa_id": "33698765432", "profile": {"name": "N" * 1000 + "\x00"}}],
        messages=[{**from_customer("wamid.LONG", "text", {"body": "y"}), "from": "33698765432"}],
    )
    assert post_whatsapp(api, whatsapp, long_name).status_code == 200
    wait_for(lambda: all_done(api, 3), what="three odd messages")
    statuses = [i["status"] for i in api.get("/api/inbound").json()["items"]]
    assert sorted(statuses) == ["processed", "processed", "unmatched"], statuses
    texts = {e["message_id"]: e["text"] for e in history(api, deal["id"])}
    assert texts == {"w-nul": "beforeafter", "wamid.ODD": "xxxxx"}
