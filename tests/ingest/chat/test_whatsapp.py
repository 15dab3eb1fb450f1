"""WhatsApp (Meta's Cloud API) over real HTTP: the verify handshake, messages of every kind,
delivery statuses, signatures and bad payloads, replies and reactions before what they
quote, notices and other numbers.

SPEC "Chat, WhatsApp, SMS" and "Which card?"; seeds 000, 001, 002.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ingest.runtime import Runtime
from ingest.signatures import (
    hub_signature,
)
from tests.conftest import FakeClock
from tests.support.calllog import all_done, card_with_phone, source, stored_count
from tests.support.chat import (
    APP_SECRET,
    CUSTOMER_WA,
    PROFILE,
    VERIFY_TOKEN,
    card,
    comment,
    from_customer,
    kanban,
    path_of,
    post_whatsapp,
    webhook,
    whatsapp_source,
)
from tests.support.helpers import counters, create_user, history, wait_for


def test_whatsapp_verify_handshake(api: httpx.Client, runtime: Runtime) -> None:
    hook = whatsapp_source(api)
    assert "verify_token" not in json.dumps(api.get(f"/api/sources/{hook['id']}").json())
    ok = api.get(
        path_of(hook),
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158"},
    )
    assert ok.status_code == 200 and ok.text == "1158"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = api.get(
        path_of(hook),
        params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1158"},
    )
    assert wrong.status_code == 403 and "1158" not in wrong.text
    assert api.get(path_of(hook)).status_code == 403
    assert api.get("/hooks/chat/999", params={"hub.verify_token": VERIFY_TOKEN}).status_code == 404


def test_whatsapp_messages_of_every_kind(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    bob = create_user(api, "bob@example.com")
    deal = card_with_phone(api, anna["id"], "+33 6 12 34 56 78", title="Acme deal")
    other = card_with_phone(api, anna["id"], "+33 1 40 00 00 00", title="Other deal")
    comment(api, clock, other["id"], bob["id"])
    assert kanban(api) == [other["id"], deal["id"]]
    hook = whatsapp_source(api)

    image = {"caption": "the broken part", "mime_type": "image/jpeg", "sha256": "abc=", "id": "77"}
    location = {"latitude": 48.8584, "longitude": 2.2945, "name": "Tour Eiffel", "address": "Paris"}
    shared = [
        {
            "name": {"formatted_name": "Marie Curie", "first_name": "Marie"},
            "phones": [{"phone": "+33 6 98 76 54 32", "wa_id": "33698765432", "type": "CELL"}],
            "emails": [{"email": "marie@example.org", "type": "WORK"}],
        }
    ]
    payload = webhook(
        contacts=PROFILE,
        messages=[
            from_customer("wamid.TEXT", "text", {"body": "Hello, any news?"}),
            from_customer("wamid.IMAGE", "image", image),
            from_customer("wamid.LOC", "location", location),
            from_customer("wamid.CONTACT", "contacts", shared),
            from_customer(
                "wamid.REPLY",
                "text",
                {"body": "As I said above"},
                context={"from": CUSTOMER_WA, "id": "wamid.TEXT"},
            ),
        ],
    )
    response = post_whatsapp(api, hook, payload)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 5
    wait_for(lambda: all_done(api, 5), what="five WhatsApp messages")

    entries = {e["message_id"]: e for e in history(api, deal["id"])}
    assert set(entries) == {
        "wamid.TEXT",
        "wamid.IMAGE",
        "wamid.LOC",
        "wamid.CONTACT",
        "wamid.REPLY",
    }
    assert all(e["type"] == "whatsapp" for e in entries.values())
    assert entries["wamid.TEXT"]["text"] == "Hello, any news?"
    assert entries["wamid.TEXT"]["from"] == {
        "name": "John Doe",
        "phone": "+33612345678",
        "email": None,
        "visitor_id": None,
    }
    assert entries["wamid.TEXT"]["occurred_at"] == "2025-11-22T09:16:40Z"
    [media] = entries["wamid.IMAGE"]["media"]
    assert (media["media_id"], media["media_type"], media["caption"]) == (
        "77",
        "image/jpeg",
        "the broken part",
    )
    assert entries["wamid.LOC"]["location"]["name"] == "Tour Eiffel"
    assert entries["wamid.CONTACT"]["shared_contacts"] == [
        {"name": "Marie Curie", "phones": ["+33 6 98 76 54 32"], "emails": ["marie@example.org"]}
    ]
    quoted = entries["wamid.REPLY"]["in_reply_to"]
    assert quoted["message_id"] == "wamid.TEXT" and quoted["text"] == "Hello, any news?"
    assert history(api, other["id"]) == []
    assert counters(api, anna["id"])["incoming"] == 5
    opened = card(api, deal["id"])
    assert opened["unread"] is True and opened["focus_reason"] == "incoming WhatsApp message"
    assert kanban(api) == [deal["id"], other["id"]]

    # A reaction shows on the message it is about, and asks nothing of anyone
    api.post(f"/api/cards/{deal['id']}/read")
    comment(api, clock, other["id"], bob["id"])
    assert kanban(api) == [other["id"], deal["id"]]
    reaction = webhook(
        contacts=PROFILE,
        messages=[
            from_customer("wamid.REACT", "reaction", {"message_id": "wamid.TEXT", "emoji": "👍"})
        ],
    )
    assert post_whatsapp(api, hook, reaction).status_code == 200
    wait_for(lambda: all_done(api, 6), what="the reaction")
    entries = {e["message_id"]: e for e in history(api, deal["id"])}
    assert entries["wamid.REACT"]["reaction"] == {"message_id": "wamid.TEXT", "emoji": "👍"}
    assert entries["wamid.TEXT"]["customer_reaction"] == "👍"
    assert counters(api, anna["id"])["incoming"] == 5
    assert card(api, deal["id"])["unread"] is False
    assert kanban(api) == [other["id"], deal["id"]]

    # Replayed by Meta (it retries until it gets a 200): same ids, nothing new
    again = post_whatsapp(api, hook, payload)
    assert again.status_code == 200 and again.json()["ids"] == response.json()["ids"]
    assert stored_count(runtime) == 6


def test_whatsapp_statuses_update_the_message_they_are_about(
    api: httpx.Client, runtime: Runtime, worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    deal = card_with_phone(api, anna["id"])
    hook = whatsapp_source(api)

    def status(state: str, stamp: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": "wamid.OUT",
            "status": state,
            "timestamp": stamp,
            "recipient_id": CUSTOMER_WA,
            **extra,
        }

    # "read" arrives first, before Meta tells us of the message itself (any order happens)
    early = post_whatsapp(api, hook, webhook(statuses=[status("read", "1763803100")]))
    assert early.status_code == 200 and early.json()["accepted"] == 1
    wait_for(lambda: all_done(api, 1), what="the early status")
    [item] = api.get("/api/inbound", params={"status": "processed"}).json()["items"]
    assert "not on a card yet" in item["reason"]

    # The message Anna sent from the WhatsApp Business app (an echo), then "delivered"
    echo = {
        "from": "15550783881",
        "to": CUSTOMER_WA,
        "id": "wamid.OUT",
        "timestamp": "1763803050",
        "type": "text",
        "text": {"body": "Your quote is ready."},
    }
    assert (
        post_whatsapp(api, hook, webhook("smb_message_echoes", message_echoes=[echo])).status_code
        == 200
    )
    post_whatsapp(api, hook, webhook(statuses=[status("delivered", "1763803060")]))
    wait_for(lambda: all_done(api, 3), what="the echo and the late status")
    [entry] = history(api, deal["id"])
    assert entry["direction"] == "outgoing" and entry["text"] == "Your quote is ready."
    assert entry["status"] == "read"  # not moved back by the late "delivered"
    # Statuses are no customer messages: no counter, not unread
    assert counters(api, anna["id"])["incoming"] == 0
    assert card(api, deal["id"])["unread"] is False

    # A failure is kept with Meta's reason
    failed = status("failed", "1763803200", errors=[{"code": 131047, "title": "Re-engagement"}])
    failed["id"] = "wamid.OUT2"
    echo2 = {**echo, "id": "wamid.OUT2", "text": {"body": "Still there?"}}
    post_whatsapp(api, hook, webhook("smb_message_echoes", message_echoes=[echo2]))
    post_whatsapp(api, hook, webhook(statuses=[failed]))
    wait_for(lambda: all_done(api, 5), what="the failed message")
    entry = next(e for e in history(api, deal["id"]) if e["message_id"] == "wamid.OUT2")
    assert (entry["status"], entry["status_error"]) == ("failed", "131047: Re-engagement")


def test_whatsapp_signatures_and_bad_payloads(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    hook = whatsapp_source(api)
    good = webhook(contacts=PROFILE, messages=[from_customer("wamid.1", "text", {"body": "Hi"})])
    raw = json.dumps(good).encode()
    forged = post_whatsapp(api, hook, good, secret="another-secret")
    unsigned = api.post(path_of(hook), content=raw)
    changed = api.post(
        path_of(hook),
        content=raw.replace(b"Hi", b"Ho"),
        headers={"X-Hub-Signature-256": hub_signature(APP_SECRET, raw)},
    )
    for response in (forged, unsigned, changed):
        assert response.status_code == 401, response.text
    assert "X-Hub-Signature-256" in unsigned.json()["detail"]
    assert stored_count(runtime) == 0

    bad_time = from_customer("wamid.2", "text", {"body": "Hi"}, timestamp="yesterday")
    response = post_whatsapp(api, hook, webhook(messages=[bad_time]))
    assert response.status_code == 422
    assert response.json()["detail"].startswith("entry[0].changes[0].value.messages[0].timestamp:")
    no_body = from_customer("wamid.3", "text", None)
    response = post_whatsapp(api, hook, webhook(messages=[no_body]))
    assert response.status_code == 422
    assert "messages[0].text: Field required" in response.json()["detail"]
    response = post_whatsapp(api, hook, {"object": "page", "entry": []})
    assert response.status_code == 422 and response.json()["detail"].startswith("object:")
    assert stored_count(runtime) == 0

    # A batch keeps its good messages and names the bad one; other fields are not messages
    mixed = post_whatsapp(
        api, hook, webhook(messages=[from_customer("wamid.4", "text", {"body": "ok"}), bad_time])
    )
    assert mixed.status_code == 200 and mixed.json()["accepted"] == 1
    [rejected] = mixed.json()["rejected"]
    assert rejected["message_id"] == "wamid.2" and "timestamp" in rejected["error"]
    other_field = post_whatsapp(api, hook, webhook("account_update", event="VERIFIED_ACCOUNT"))
    assert other_field.status_code == 200 and other_field.json()["accepted"] == 0
    assert "account_update" in other_field.json()["ignored"]
    assert stored_count(runtime) == 1


def test_replies_and_reactions_processed_before_what_they_quote(
    api: httpx.Client, runtime: Runtime, worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    deal = card_with_phone(api, anna["id"])
    hook = whatsapp_source(api)

    def send(*messages: dict[str, Any], done: int) -> None:
        assert (
            post_whatsapp(api, hook, webhook(contacts=PROFILE, messages=list(messages))).status_code
            == 200
        )
        wait_for(lambda: all_done(api, done), what=f"{done} messages")

    # The reply and two reactions come first (the later-sent reaction processed first)
    reply = from_customer("wamid.R", "text", {"body": "See above"}, context={"id": "wamid.O"})
    late = from_customer("wamid.X2", "reaction", {"message_id": "wamid.O", "emoji": "❤️"})
    late["timestamp"] = "1763803200"
    early = from_customer("wamid.X1", "reaction", {"message_id": "wamid.O", "emoji": "👍"})
    early["timestamp"] = "1763803100"
    send(reply, done=1)
    send(late, done=2)
    send(early, done=3)
    entries = {e["message_id"]: e for e in history(api, deal["id"])}
    assert entries["wamid.R"]["in_reply_to"] == {
        "message_id": "wamid.O",
        "history_id": None,
        "text": None,
    }
    # When the original arrives, the reply quotes it and the latest reaction shows on it
    send(from_customer("wamid.O", "text", {"body": "The original"}), done=4)
    entries = {e["message_id"]: e for e in history(api, deal["id"])}
    assert entries["wamid.R"]["in_reply_to"]["text"] == "The original"
    assert entries["wamid.R"]["in_reply_to"]["history_id"] == entries["wamid.O"]["id"]
    assert entries["wamid.O"]["customer_reaction"] == "❤️"
    # Reactions asked nothing of anyone: two messages, two incoming activities
    assert counters(api, anna["id"])["incoming"] == 2


def test_whatsapp_notices_and_other_numbers(
    api: httpx.Client, runtime: Runtime, worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    deal = card_with_phone(api, anna["id"])
    hook = source(
        api,
        kind="whatsapp",
        name="WhatsApp Business",
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
        phone_number_id="106540352242922",
    )
    assert APP_SECRET not in json.dumps(api.get("/api/sources").json())
    assert VERIFY_TOKEN not in json.dumps(api.get(f"/api/sources/{hook['id']}").json())
    system = from_customer(
        "wamid.SYS",
        "system",
        {"body": "John changed their number", "type": "user_changed_number"},
    )
    assert post_whatsapp(api, hook, webhook(contacts=PROFILE, messages=[system])).status_code == 200
    other_number = webhook(
        contacts=PROFILE, messages=[from_customer("wamid.O", "text", {"body": "x"})]
    )
    other_number["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    response = post_whatsapp(api, hook, other_number)
    assert response.status_code == 200 and response.json()["accepted"] == 0
    assert "business number 999" in response.json()["ignored"]
    wait_for(lambda: all_done(api, 1), what="the notice")
    [entry] = history(api, deal["id"])
    assert entry["kind"] == "system"
    assert counters(api, anna["id"])["incoming"] == 0
    assert card(api, deal["id"])["unread"] is False
