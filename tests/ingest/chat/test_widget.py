"""The chat widget over real HTTP: visitors' messages, replies and delivery statuses,
signatures and bad input, a visitor without contact details in the unmatched list, and a
visitor who cannot attach their number to someone else's contact.

SPEC "Chat, WhatsApp, SMS" and "Which card?"; seeds 000, 001, 002.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.support.calllog import all_done, card_with_phone, source, stored_count
from tests.support.chat import (
    JOHN,
    SMS,
    card,
    kanban,
    path_of,
    post_twilio,
    post_widget,
    twilio_source,
    visitor_message,
)
from tests.support.helpers import counters, create_user, history, wait_for
from tests.support.locks import database_write_locked


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
