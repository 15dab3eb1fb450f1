"""Chat widget, WhatsApp and SMS over real HTTP: each provider's documented payloads, their
signatures, retries and duplicates, delivery statuses, the unmatched list, and the seed's
postponed deal that a customer's WhatsApp message brings back to the top.

SPEC "Chat, WhatsApp, SMS" and "Which card?"; seeds 000, 001, 002.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from crm_core.models import utcnow
from ingest.runtime import Runtime
from ingest.signatures import (
    BadSignature,
    check_twilio,
    hub_signature,
    sign_timestamped,
    twilio_signature,
)
from tests.conftest import FakeClock
from tests.helpers import counters, create_user, history, wait_for
from tests.provider_sdks import twilio_signature as sdk_signature
from tests.test_calllog import all_done, card_with_phone, post_twilio_form, source, stored_count
from tests.test_smtp import database_write_locked

APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "a-verify-token-we-chose"
TWILIO_TOKEN = "twilio-auth-token"
CUSTOMER_WA = "33612345678"  # WhatsApp ids are E.164 digits without "+"


def kanban(api: httpx.Client) -> list[int]:
    response = api.get("/api/kanban", params={"entity_type": "deal", "stage": "new"})
    return [c["id"] for c in response.json()["cards"]]


def card(api: httpx.Client, card_id: int) -> dict[str, Any]:
    return dict(api.get(f"/api/cards/{card_id}").json())


def path_of(hook: dict[str, Any]) -> str:
    return f"/hooks/chat/{hook['id']}"


# --- the widget (our JSON) -------------------------------------------------------------


def post_widget(
    api: httpx.Client,
    hook: dict[str, Any],
    payload: dict[str, Any],
    clock: FakeClock,
    secret: str | None = None,
    timestamp: int | None = None,
) -> httpx.Response:
    raw = json.dumps(payload).encode()
    stamp = str(timestamp if timestamp is not None else int(clock().timestamp()))
    return api.post(
        path_of(hook),
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Timestamp": stamp,
            "X-Signature": sign_timestamped(secret or hook["secret"], stamp, raw),
        },
    )


def visitor_message(message_id: str, text: str = "Hello", **fields: Any) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "visitor": fields.pop("visitor", {"id": "v-42", "name": "John Doe"}),
        "text": text,
        "sent_at": fields.pop("sent_at", "2026-11-22T10:15:00+01:00"),
        **fields,
    }


JOHN = {"id": "v-42", "name": "John Doe", "email": "John.Doe@acme.com"}


def test_widget_messages_replies_and_statuses(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    deal = api.post(
        "/api/cards",
        json={
            "title": "Acme: 40 licences",
            "entity_type": "deal",
            "stage": "new",
            "responsible_id": anna["id"],
            "contact_emails": ["john.doe@acme.com"],
        },
    ).json()
    quiet = card_with_phone(api, anna["id"], "+33 1 40 00 00 00", title="Quiet deal")
    assert kanban(api) == [quiet["id"], deal["id"]]
    hook = source(api, kind="widget", name="Website chat")
    assert hook["hook_url"].endswith(path_of(hook)) and hook["secret"]
    assert "secret" not in json.dumps(api.get(f"/api/sources/{hook['id']}").json())

    # Given John writes in the website chat, with a file
    first = visitor_message(
        "w-1",
        "Is the offer still valid?",
        visitor={**JOHN, "phone": "06 12 34 56 78"},
        attachments=[
            {"url": "https://cdn.example.com/quote.pdf", "name": "quote.pdf", "media_type": "x"}
        ],
    )
    response = post_widget(api, hook, first, clock)
    assert response.status_code == 202, response.text
    wait_for(lambda: all_done(api, 1), what="the chat message")

    # Then it is on his deal: history, unread, counter, focus
    [entry] = history(api, deal["id"])
    assert entry["type"] == "chat" and entry["direction"] == "incoming"
    assert entry["text"] == "Is the offer still valid?"
    assert entry["from"]["email"] == "john.doe@acme.com" and entry["from"]["visitor_id"] == "v-42"
    assert entry["media"] == [
        {"url": "https://cdn.example.com/quote.pdf", "name": "quote.pdf", "media_type": "x"}
    ]
    assert entry["occurred_at"] == "2026-11-22T09:15:00Z"
    assert counters(api, anna["id"])["incoming"] == 1
    opened = card(api, deal["id"])
    assert opened["unread"] is True and opened["focus_reason"] == "incoming chat message"
    assert kanban(api) == [deal["id"], quiet["id"]]
    # What a visitor types is not proof: the phone is kept on the message (E.164), not
    # added to John's contact
    assert [c["phones"] for c in opened["contacts"]] == [[]]
    assert entry["from"]["phone"] == "+33612345678"
    [chat_activity] = api.get("/api/activities", params={"type": "chat"}).json()["items"]
    assert chat_activity["is_open"] and chat_activity["incoming"]

    # When Anna answers from the widget, replying to his message
    reply = visitor_message(
        "w-2", "Yes, until Friday.", visitor=JOHN, direction="outgoing", employee=anna["email"]
    )
    reply["reply_to"] = "w-1"
    assert post_widget(api, hook, reply, clock).status_code == 202
    wait_for(lambda: all_done(api, 2), what="the reply")
    # Then his message is answered: the activity is closed, the counter back to 0
    assert counters(api, anna["id"])["incoming"] == 0
    answer = next(e for e in history(api, deal["id"]) if e.get("message_id") == "w-2")
    assert answer["direction"] == "outgoing" and answer["employee"]["id"] == anna["id"]
    assert answer["in_reply_to"]["message_id"] == "w-1"
    assert answer["in_reply_to"]["text"] == "Is the offer still valid?"
    assert answer["answered"] == [chat_activity["id"]]

    # Delivery statuses update the reply; a late "delivered" does not undo "read"
    for status in ("read", "delivered"):
        report = {
            "type": "status",
            "message_id": "w-2",
            "status": status,
            "at": clock().isoformat(),
        }
        assert post_widget(api, hook, report, clock).status_code == 202
    wait_for(lambda: all_done(api, 4), what="the statuses")
    answer = next(e for e in history(api, deal["id"]) if e.get("message_id") == "w-2")
    assert answer["status"] == "read"
    # ...and are no customer messages: nothing new in history, no counter
    assert len(history(api, deal["id"])) == 3  # two messages and the closed task
    assert counters(api, anna["id"])["incoming"] == 0

    # The same message again: 202, the same item, nothing changes
    before = (history(api, deal["id"]), counters(api, anna["id"]))
    again = post_widget(api, hook, first, clock)
    assert again.status_code == 202 and again.json()["ids"] == response.json()["ids"]
    time.sleep(0.5)
    assert (history(api, deal["id"]), counters(api, anna["id"])) == before
    assert stored_count(runtime) == 4


@pytest.mark.settings(db_lock_timeout_seconds=1.0)  # the write lock is held on purpose
def test_widget_signatures_and_bad_input(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    create_user(api, "anna@example.com")
    hook = source(api, kind="widget", name="Website chat")
    message = visitor_message("w-1", visitor=JOHN)
    now = int(clock().timestamp())
    for response in (
        post_widget(api, hook, message, clock, secret="not-the-secret"),
        post_widget(api, hook, message, clock, timestamp=now - 301),
        api.post(path_of(hook), json=message),
    ):
        assert response.status_code == 401, response.text
    assert stored_count(runtime) == 0

    cases = {
        "sent_at: Input should have timezone info": visitor_message(
            "w-2", visitor=JOHN, sent_at="2026-11-22T10:15:00"
        ),
        "visitor.email: Value error, not an e-mail address": visitor_message(
            "w-3", visitor={"id": "v", "email": "not-an-address"}
        ),
        "visitor.phone: ": visitor_message("w-4", visitor={"id": "v", "phone": "call me"}),
        "text: a message needs a text or attachments": visitor_message("w-5", " ", visitor=JOHN),
        "employee: required for an outgoing message": visitor_message(
            "w-6", visitor=JOHN, direction="outgoing"
        ),
        "attachments[0].url: ": visitor_message(
            "w-7", visitor=JOHN, attachments=[{"url": "not a url"}]
        ),
        "status: Input should be": {
            "type": "status",
            "message_id": "w-1",
            "status": "lost",
            "at": "2026-11-22T10:15:00Z",
        },
    }
    for expected, payload in cases.items():
        response = post_widget(api, hook, payload, clock)
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith(expected), response.json()
    assert stored_count(runtime) == 0

    with database_write_locked(runtime.engine):
        outage = post_widget(api, hook, message, clock)
    assert outage.status_code == 503 and "try again" in outage.json()["detail"]
    assert stored_count(runtime) == 0


def test_a_visitor_without_contact_details_waits_in_the_unmatched_list(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    target = card_with_phone(api, anna["id"])
    hook = source(api, kind="widget", name="Website chat")
    post_widget(api, hook, visitor_message("w-1", "Who can help me?"), clock)
    post_widget(
        api,
        hook,
        visitor_message("w-2", "Me again", visitor={"id": "v-7", "email": "new@example.org"}),
        clock,
    )
    wait_for(lambda: all_done(api, 2), what="two messages")
    waiting = {i["id"]: i for i in api.get("/api/unmatched").json()["items"]}
    reasons = sorted(i["reason"] for i in waiting.values())
    assert reasons[0].startswith("no open card for new@example.org")
    assert reasons[1].startswith("no phone number or e-mail to find the sender")
    assert counters(api, anna["id"])["incoming"] == 0

    first = min(waiting)
    attached = api.post(f"/api/unmatched/{first}/attach", json={"card_id": target["id"]})
    assert attached.status_code == 200, attached.text
    assert attached.json()["status"] == "processed"
    [entry] = history(api, target["id"])
    assert entry["text"] == "Who can help me?" and entry["contact_id"] is None
    assert counters(api, anna["id"])["incoming"] == 1
    assert card(api, target["id"])["unread"] is True
    again = api.post(f"/api/unmatched/{first}/attach", json={"card_id": target["id"]})
    assert again.status_code == 409


# --- WhatsApp Cloud API ----------------------------------------------------------------


def whatsapp_source(api: httpx.Client) -> dict[str, Any]:
    return source(
        api,
        kind="whatsapp",
        name="WhatsApp Business",
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
    )


def webhook(field: str = "messages", **value: Any) -> dict[str, Any]:
    """A Cloud API webhook as Meta documents it (one entry, one change)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": field,
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def from_customer(message_id: str, kind: str, part: Any, **extra: Any) -> dict[str, Any]:
    return {
        "from": CUSTOMER_WA,
        "id": message_id,
        "timestamp": "1763803000",
        "type": kind,
        kind: part,
        **extra,
    }


PROFILE = [{"profile": {"name": "John Doe"}, "wa_id": CUSTOMER_WA}]


def post_whatsapp(
    api: httpx.Client, hook: dict[str, Any], payload: Any, secret: str = APP_SECRET
) -> httpx.Response:
    raw = json.dumps(payload).encode()
    return api.post(
        path_of(hook),
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": hub_signature(secret, raw),
        },
    )


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


def comment(api: httpx.Client, clock: FakeClock, card_id: int, author_id: int) -> None:
    """A colleague's comment focuses the card; at the real time, as the worker's events."""
    clock.now = utcnow()
    response = api.post(
        f"/api/cards/{card_id}/comments", json={"text": "news", "author_id": author_id}
    )
    assert response.status_code == 201, response.text


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


# --- Twilio SMS and WhatsApp -----------------------------------------------------------


def test_twilio_published_signature_vector() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert twilio_signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    check_twilio("12345", url, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    with pytest.raises(BadSignature):
        check_twilio(
            "12345", url, {**params, "Digits": "1235"}.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        )


def twilio_source(api: httpx.Client) -> dict[str, Any]:
    return source(
        api,
        kind="twilio",
        name="Twilio SMS",
        auth_token=TWILIO_TOKEN,
        public_base_url="https://crm.example.com",
    )


def post_twilio(
    api: httpx.Client,
    hook: dict[str, Any],
    params: dict[str, str],
    token: str = TWILIO_TOKEN,
    query: str = "",
) -> httpx.Response:
    return post_twilio_form(api, path_of(hook) + query, params, token)


SMS = {  # Twilio's incoming message webhook, as documented
    "ToCountry": "FR",
    "SmsMessageSid": "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0",
    "NumMedia": "0",
    "SmsSid": "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0",
    "SmsStatus": "received",
    "Body": "Can we move the meeting to Monday?",
    "To": "+33757000000",
    "NumSegments": "1",
    "MessageSid": "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0",
    "AccountSid": "AC25e16e9a716a4a1786a7c83f58e30482",
    "From": "+33612345678",
    "FromCountry": "FR",
    "ApiVersion": "2010-04-01",
}


def test_twilio_sms_mms_and_whatsapp(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    bob = create_user(api, "bob@example.com")
    deal = card_with_phone(api, anna["id"])
    other = card_with_phone(api, anna["id"], "+33 1 40 00 00 00", title="Other deal")
    comment(api, clock, other["id"], bob["id"])
    assert kanban(api) == [other["id"], deal["id"]]
    hook = twilio_source(api)

    forged = post_twilio(api, hook, SMS, token="another-token")
    assert forged.status_code == 401 and stored_count(runtime) == 0
    # The query is part of what Twilio signs
    response = post_twilio(api, hook, SMS, query="?tenant=acme")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Response></Response>" in response.text

    mms = {
        **SMS,
        "MessageSid": "MM0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "Body": "",
        "NumMedia": "1",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC25/Messages/MM0a/Media/ME1",
        "MediaContentType0": "image/png",
    }
    whatsapp = {
        **SMS,
        "MessageSid": "SM9a8b7c6d5e4f30211203f4e5d6c7b8a9",
        "Body": "Sent from WhatsApp",
        "From": "whatsapp:+33612345678",
        "To": "whatsapp:+14155238886",
        "ProfileName": "John Doe",
        "WaId": "33612345678",
    }
    for params in (mms, whatsapp):
        assert post_twilio(api, hook, params).status_code == 200
    wait_for(lambda: all_done(api, 3), what="three Twilio messages")
    entries = {e["message_id"]: e for e in history(api, deal["id"])}
    sms = entries[SMS["MessageSid"]]
    assert (sms["type"], sms["text"], sms["provider"]) == ("sms", SMS["Body"], "twilio")
    assert entries[mms["MessageSid"]]["media"] == [
        {"url": mms["MediaUrl0"], "media_type": "image/png"}
    ]
    wa = entries[whatsapp["MessageSid"]]
    assert wa["type"] == "whatsapp" and wa["from"]["name"] == "John Doe"
    assert counters(api, anna["id"])["incoming"] == 3
    assert card(api, deal["id"])["unread"] is True
    assert kanban(api) == [deal["id"], other["id"]]
    # Processed in parallel: the last one processed gives the reason
    assert card(api, deal["id"])["focus_reason"] in {"incoming SMS", "incoming WhatsApp message"}
    waiting = api.get("/api/activities", params={"card_id": deal["id"]}).json()["items"]
    assert sorted(a["type"] for a in waiting) == ["sms", "sms", "whatsapp"]

    # A status callback on a message the company sent is not a customer message
    callback = {
        "MessageSid": "SM7e6d5c4b3a2910f8e7d6c5b4a3928170",
        "MessageStatus": "delivered",
        "SmsSid": "SM7e6d5c4b3a2910f8e7d6c5b4a3928170",
        "SmsStatus": "delivered",
        "AccountSid": SMS["AccountSid"],
        "From": "+33757000000",
        "To": "+33612345678",
        "ApiVersion": "2010-04-01",
    }
    assert post_twilio(api, hook, callback).status_code == 200
    wait_for(lambda: all_done(api, 4), what="the status callback")
    assert len(history(api, deal["id"])) == 3
    assert counters(api, anna["id"])["incoming"] == 3

    # Twilio retries a message it got no answer for: the same item, nothing new
    assert post_twilio(api, hook, SMS).status_code == 200
    assert stored_count(runtime) == 4

    for params, expected in (
        ({**SMS, "MessageSid": "SMx"}, "MessageSid: String should match pattern"),
        ({**SMS, "From": "whatsapp:hello"}, "From: "),
        ({**SMS, "NumMedia": "2", "Body": ""}, "MediaUrl0: missing"),
    ):
        refused = post_twilio(api, hook, params)
        assert refused.status_code == 422 and refused.json()["detail"].startswith(expected)
    assert stored_count(runtime) == 4


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


def test_a_visitor_cannot_attach_their_number_to_someone_elses_contact(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    johns = api.post(
        "/api/cards",
        json={
            "title": "John's deal",
            "entity_type": "deal",
            "stage": "new",
            "responsible_id": anna["id"],
            "contact_emails": ["john.doe@acme.com"],
        },
    ).json()
    widget = source(api, kind="widget", name="Website chat")
    twilio = twilio_source(api)
    # A stranger types John's address and their own number in the chat
    claim = visitor_message("w-1", visitor={"id": "v-9", **JOHN, "phone": "+44 20 7946 0958"})
    assert post_widget(api, widget, claim, clock).status_code == 202
    wait_for(lambda: all_done(api, 1), what="the chat message")
    # Then their later SMS is not taken for John's
    sms = {**SMS, "From": "+442079460958"}
    assert post_twilio(api, twilio, sms).status_code == 200
    wait_for(lambda: all_done(api, 2), what="the SMS")
    assert [e["type"] for e in history(api, johns["id"])] == ["chat"]
    [waiting] = api.get("/api/unmatched").json()["items"]
    assert "+442079460958" in waiting["reason"]


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


def test_twilio_signature_failures_at_the_hook(api: httpx.Client, runtime: Runtime) -> None:
    hook = twilio_source(api)
    assert TWILIO_TOKEN not in json.dumps(api.get(f"/api/sources/{hook['id']}").json())
    path = path_of(hook)
    good = sdk_signature(TWILIO_TOKEN, "https://crm.example.com" + path, SMS)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    missing = api.post(path, content=urlencode(SMS), headers=form)
    tampered = api.post(
        path,
        content=urlencode({**SMS, "Body": "Pay to IBAN X"}),
        headers={**form, "X-Twilio-Signature": good},
    )
    # Signed for the address behind the proxy, not the public one Twilio called
    internal = sdk_signature(TWILIO_TOKEN, "http://127.0.0.1:8000" + path, SMS)
    wrong_url = api.post(
        path, content=urlencode(SMS), headers={**form, "X-Twilio-Signature": internal}
    )
    junk = api.post(path, content=b"\xff=\xfe&&", headers={**form, "X-Twilio-Signature": good})
    for response in (missing, tampered, wrong_url, junk):
        assert response.status_code == 401, response.text
    assert "X-Twilio-Signature" in missing.json()["detail"]
    assert stored_count(runtime) == 0
    # The good signature, for the record, is accepted
    ok = api.post(path, content=urlencode(SMS), headers={**form, "X-Twilio-Signature": good})
    assert ok.status_code == 200 and stored_count(runtime) == 1
