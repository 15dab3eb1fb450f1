"""Telegram Bot API webhooks: the provider called directly (verify, split, parse), then over
real HTTP (a source, the secret token header, a customer sharing their contact, the
unmatched list, a retried update).

Payloads are shaped as the Bot API reference documents `Update` and `Message`
(https://core.telegram.org/bots/api#update).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from crm_core.models import dedupe_key
from ingest.chat.telegram import PROVIDER, TELEGRAM, TelegramSourceIn
from ingest.errors import RejectedInput
from ingest.provider import ActiveSource, HookAccepted, HookRequest, StoredSource
from ingest.signatures import BadSignature
from tests.support.helpers import counters, create_user, history, wait_for

SECRET = "k0Z-_tokenFromSecretsTokenUrlsafe32xxxxxxxx"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
CHAT = 123456789  # a private chat's id is the user's id
JOHN = {"id": CHAT, "is_bot": False, "first_name": "John", "last_name": "Doe", "username": "jd"}
ACTIVE = ActiveSource(7, "telegram", {"name": "Sales bot"}, {"secret_token": SECRET})
STORED = StoredSource(7, "telegram", {"name": "Sales bot"}, "FR")


def update(update_id: int = 1, message_id: int = 42, **fields: Any) -> dict[str, Any]:
    """An Update carrying a customer's message in their private chat with the bot."""
    message = {
        "message_id": message_id,
        "date": 1795346100,  # 2026-11-22T11:15:00Z
        "chat": {"id": fields.pop("chat_id", CHAT), "type": fields.pop("chat_type", "private")},
        "from": fields.pop("sender", JOHN),
        **fields,
    }
    return {"update_id": update_id, "message": message}


def request(body: Any, token: str | None = SECRET) -> HookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = httpx.Headers({"X-Telegram-Bot-Api-Secret-Token": token} if token else {})
    return HookRequest(7, headers, "/hooks/chat/7", raw)


def parse(body: dict[str, Any]) -> Any:
    return PROVIDER.parse(STORED, json.dumps(body).encode(), NOW)


# --- the provider, called directly ------------------------------------------------------


def test_the_provider_describes_itself() -> None:
    assert (PROVIDER.kind, PROVIDER.channel, PROVIDER.media) == ("telegram", "chat", (TELEGRAM,))
    assert PROVIDER.secret_settings == ("secret_token",)
    assert PROVIDER.generated_secret == "secret_token"
    assert TELEGRAM.noun == "Telegram message"
    TelegramSourceIn.model_validate({"kind": "telegram", "name": "Bot", "default_region": "FR"})
    example = PROVIDER.body_docs["application/json"]["examples"]["a text message"]["value"]
    assert PROVIDER.split(ACTIVE, request(example), NOW, "FR").inputs
    assert "X-Telegram-Bot-Api-Secret-Token" in PROVIDER.hook_doc
    answer = PROVIDER.answer(HookAccepted(accepted=1, ids=[3]))
    assert answer.status_code == 200 and answer.body is None  # our HookAccepted as JSON


def test_a_generated_secret_is_a_valid_telegram_secret_token() -> None:
    import re
    import secrets

    for _ in range(50):
        token = secrets.token_urlsafe(32)
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,256}", token), token


def test_verify_compares_the_secret_token_header() -> None:
    body = update(text="Hi")
    PROVIDER.verify(ACTIVE, request(body), NOW)
    lower = HookRequest(7, {"x-telegram-bot-api-secret-token": SECRET}, "/", b"{}")
    PROVIDER.verify(ACTIVE, lower, NOW)
    for token in ("wrong", SECRET + "x", SECRET[:-1], None, ""):
        with pytest.raises(BadSignature):
            PROVIDER.verify(ACTIVE, request(body, token), NOW)
    # a header value the framework decoded as Latin-1 is no match either, and no crash
    latin = HookRequest(7, {"x-telegram-bot-api-secret-token": "é" + SECRET}, "/", b"{}")
    with pytest.raises(BadSignature):
        PROVIDER.verify(ACTIVE, latin, NOW)


def test_split_keeps_one_message_per_update_keyed_by_chat_and_message() -> None:
    body = update(text="Hello")
    split = PROVIDER.split(ACTIVE, request(body), NOW, "FR")
    [one] = split.inputs
    assert one.dedupe_key == dedupe_key("chat", 7, f"{CHAT}:42")
    assert one.raw == json.dumps(body).encode()
    assert not split.rejected and not split.ignored
    # the same message id in another chat is another message; a retry is the same key
    other = PROVIDER.split(ACTIVE, request(update(text="Hi", chat_id=555)), NOW, "FR")
    assert other.inputs[0].dedupe_key != one.dedupe_key
    retry = PROVIDER.split(ACTIVE, request(update(update_id=2, text="Hello")), NOW, "FR")
    assert retry.inputs[0].dedupe_key == one.dedupe_key


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"update_id": 5, "edited_message": update(text="fixed")["message"]}, "an edit"),
        ({"update_id": 5, "channel_post": update(text="news")["message"]}, "channel"),
        ({"update_id": 5, "business_message": update(text="hi")["message"]}, "business"),
        ({"update_id": 5, "callback_query": {"id": "1", "from": JOHN}}, "callback_query"),
        ({"update_id": 5, "my_chat_member": {"chat": {"id": 1, "type": "private"}}}, "member"),
        ({"update_id": 5}, "nothing"),
        (update(text="/start", sender={**JOHN, "is_bot": True}), "from a bot"),
        (update(text="hi all", chat_type="group", chat_id=-100), "group chat"),
        (update(text="hi", sender=None), "without a sender"),
        (update(pinned_message={"message_id": 3}), "service message"),
    ],
)
def test_split_ignores_what_is_no_customer_message(body: dict[str, Any], why: str) -> None:
    split = PROVIDER.split(ACTIVE, request(body), NOW, "FR")
    assert not split.inputs and not split.rejected
    [reason] = split.ignored
    assert reason.startswith("update 5" if body["update_id"] == 5 else "update 1")
    assert why in reason, reason


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"{not json", "body: not JSON"),
        (b"[1, 2]", "body: must be a Telegram Update object"),
        (json.dumps({"message": {}}).encode(), "update_id"),
        (json.dumps(update(text="x") | {"update_id": "x"}).encode(), "update_id"),
        (json.dumps({"update_id": 1, "message": {"message_id": 1}}).encode(), "message.date"),
        (json.dumps(update(location={"latitude": 91, "longitude": 0})).encode(), "latitude"),
        (json.dumps(update(photo=[{"width": 90}])).encode(), "message.photo[0].file_id"),
    ],
)
def test_split_rejects_a_bad_update_naming_the_field(raw: bytes, named: str) -> None:
    with pytest.raises(RejectedInput) as caught:
        PROVIDER.split(ACTIVE, request(raw), NOW, "FR")
    assert named in caught.value.reason, caught.value.reason


def test_parse_a_text_message() -> None:
    message = parse(update(text="Is the offer still valid?"))
    assert message.source_id == 7 and message.message_id == f"{CHAT}:42"
    assert (message.channel, message.provider, message.kind) == ("telegram", "telegram", "text")
    assert message.direction == "incoming" and message.asks_attention
    assert message.sent_at == datetime(2026, 11, 22, 11, 15, tzinfo=UTC)
    assert message.sender_name == "John Doe" and message.visitor_id == f"telegram:{CHAT}"
    assert message.phone is None and message.email is None
    assert message.text == "Is the offer still valid?" and message.media == []
    assert message.dedupe_key == dedupe_key("chat", 7, f"{CHAT}:42")
    only_username = parse(update(text="x", sender={"id": 9, "is_bot": False, "username": "u"}))
    assert only_username.sender_name == "u"


def test_parse_a_photo_with_its_caption_and_other_media() -> None:
    sizes = [{"file_id": "small", "width": 90}, {"file_id": "large", "width": 1280}]
    message = parse(update(photo=sizes, caption="The broken part"))
    assert message.kind == "photo" and message.text == "The broken part"
    assert message.media == [
        {"telegram_file_id": "large", "type": "photo", "name": "", "media_type": ""}
    ]
    pdf = {"file_id": "doc-1", "file_name": "quote.pdf", "mime_type": "application/pdf"}
    document = parse(update(document=pdf))
    assert document.kind == "document" and document.text == ""
    assert document.media == [
        {
            "telegram_file_id": "doc-1",
            "type": "document",
            "name": "quote.pdf",
            "media_type": "application/pdf",
        }
    ]
    gif = parse(update(animation={"file_id": "a-1"}, document={"file_id": "a-1"}))
    assert gif.kind == "animation"
    voice = parse(update(voice={"file_id": "v-1", "mime_type": "audio/ogg"}))
    assert voice.media[0]["type"] == "voice"
    sticker = parse(update(sticker={"file_id": "s-1", "emoji": "👍"}))
    assert sticker.kind == "sticker" and sticker.text == "👍"


def test_parse_a_contact_the_customer_shares() -> None:
    own = {"phone_number": "33612345678", "first_name": "John", "user_id": CHAT}
    message = parse(update(contact=own))
    assert message.kind == "contact" and message.phone == "+33612345678"
    assert message.shared_contacts == [{"name": "John", "phones": ["33612345678"], "emails": []}]
    plus = parse(update(contact={**own, "phone_number": "+33 6 12 34 56 78"}))
    assert plus.phone == "+33612345678"
    # someone else's card: kept, but it is not the sender's number
    friend = {"phone_number": "+442071838750", "first_name": "Jane", "last_name": "Roe"}
    shared = parse(update(contact=friend))
    assert shared.phone is None and shared.shared_contacts[0]["name"] == "Jane Roe"
    # a number we cannot read does not lose the message
    odd = parse(update(contact={**own, "phone_number": "888"}))
    assert odd.phone is None and odd.shared_contacts


def test_parse_a_location_a_venue_and_a_reply() -> None:
    spot = parse(update(location={"latitude": 48.8584, "longitude": 2.2945}))
    assert spot.kind == "location"
    assert spot.location == {"latitude": 48.8584, "longitude": 2.2945, "name": "", "address": ""}
    venue = {
        "location": {"latitude": 48.8584, "longitude": 2.2945},
        "title": "Eiffel Tower",
        "address": "Champ de Mars",
    }
    place = parse(update(venue=venue, location=venue["location"]))
    assert place.kind == "venue" and place.location["name"] == "Eiffel Tower"
    reply = parse(update(message_id=43, text="Yes", reply_to_message={"message_id": 41}))
    assert reply.reply_to == f"{CHAT}:41"


def test_parse_refuses_what_split_ignores() -> None:
    with pytest.raises(RejectedInput):
        parse({"update_id": 5, "edited_message": update(text="x")["message"]})


# --- over real HTTP ---------------------------------------------------------------------
# The hook is the chat channel's, `POST /hooks/chat/{source_id}`, from the registry.


def telegram_source(api: httpx.Client) -> dict[str, Any]:
    response = api.post("/api/sources", json={"kind": "telegram", "name": "Sales bot"})
    assert response.status_code == 201, response.text
    return dict(response.json())


def post_update(
    api: httpx.Client, hook: dict[str, Any], body: dict[str, Any], token: str | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token != "":
        headers["X-Telegram-Bot-Api-Secret-Token"] = token or hook["secret"]
    return api.post(f"/hooks/chat/{hook['id']}", content=json.dumps(body), headers=headers)


def inbound(api: httpx.Client) -> list[dict[str, Any]]:
    return list(api.get("/api/inbound", params={"limit": 1000}).json()["items"])


def all_done(api: httpx.Client, count: int) -> bool:
    items = inbound(api)
    return len(items) == count and all(i["status"] != "received" for i in items)


def test_telegram_messages_over_http(api: httpx.Client, worker: None) -> None:
    anna = create_user(api, "anna@example.com")
    deal = api.post(
        "/api/cards",
        json={
            "title": "Acme: 40 licences",
            "entity_type": "deal",
            "stage": "new",
            "responsible_id": anna["id"],
            "contact_phones": ["+33 6 12 34 56 78"],
        },
    ).json()
    hook = telegram_source(api)
    assert hook["hook_url"].endswith(f"/hooks/chat/{hook['id']}")
    assert len(hook["secret"]) == 43
    assert "secret" not in json.dumps(api.get(f"/api/sources/{hook['id']}").json())

    # A wrong or missing token: 401, nothing stored
    first = update(1, 42, text="Hello, is the offer still valid?")
    for token in ("not-the-token", ""):
        refused = post_update(api, hook, first, token)
        assert refused.status_code == 401, refused.text
    assert inbound(api) == []

    # John writes: 200, stored, and waits for a person (Telegram gives no number)
    accepted = post_update(api, hook, first)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == 1
    wait_for(lambda: all_done(api, 1), what="the first message")
    [waiting] = api.get("/api/unmatched").json()["items"]
    assert waiting["reason"].startswith("no phone number or e-mail")

    # Telegram retries the same update: the same item, nothing new
    again = post_update(api, hook, first)
    assert again.status_code == 200 and again.json()["ids"] == accepted.json()["ids"]
    # an edit and a button press are answered 200 and not stored
    edited = {"update_id": 2, "edited_message": {**first["message"], "text": "Hi"}}
    for ignored in (edited, {"update_id": 3, "callback_query": {"id": "9", "from": JOHN}}):
        answer = post_update(api, hook, ignored)
        assert answer.status_code == 200 and answer.json()["accepted"] == 0, answer.text
        assert answer.json()["ignored"]
    assert post_update(api, hook, {"update_id": "x"}).status_code == 422

    # He shares his own contact: that message lands on his deal
    shared = {"phone_number": "33612345678", "first_name": "John", "user_id": CHAT}
    assert post_update(api, hook, update(4, 43, contact=shared)).status_code == 200
    wait_for(lambda: all_done(api, 2), what="the shared contact")
    [entry] = history(api, deal["id"])
    assert entry["type"] == "telegram" and entry["provider"] == "telegram"
    assert entry["from"]["phone"] == "+33612345678"
    assert entry["from"]["visitor_id"] == f"telegram:{CHAT}"
    assert entry["message_id"] == f"{CHAT}:43"
    assert counters(api, anna["id"])["incoming"] == 1

    # The first message is attached from the unmatched list
    attached = api.post(f"/api/unmatched/{waiting['id']}/attach", json={"card_id": deal["id"]})
    assert attached.status_code == 200, attached.text
    texts = sorted(e.get("text") or "" for e in history(api, deal["id"]))
    assert texts == ["Hello, is the offer still valid?", "John"]
    time.sleep(0.3)
    assert len(inbound(api)) == 2
