"""The `telegram` provider: Telegram Bot API webhooks (https://core.telegram.org/bots/api).

How Telegram sends them (Bot API reference, "Getting updates" and "Available types"):
- `setWebhook` takes the `url` to post to and a `secret_token` of 1-256 characters
  `A-Za-z0-9_-`; every webhook request then carries it in the header
  `X-Telegram-Bot-Api-Secret-Token`. We generate it (`secrets.token_urlsafe(32)`: 43
  characters of exactly that alphabet), show it once, and compare it in constant time.
- The body is one JSON `Update`: `update_id` and at most one of `message`,
  `edited_message`, `channel_post`, `business_message`, `callback_query`,
  `my_chat_member`... Telegram only needs a 2xx back; on anything else it retries.
- A `Message` has `message_id` (unique within its chat only), `date` (Unix seconds),
  `chat` (`id`, `type`: private, group, supergroup, channel), `from` (a `User`: `id`,
  `is_bot`, `first_name`, `last_name`, `username`), `text`, or media (`photo`: a list of
  `PhotoSize`, smallest first; `document`, `voice`, `video`, `audio`, `sticker`,
  `animation`, `video_note`, each with its `file_id`) and a `caption`, `location`
  (`latitude`, `longitude`), `venue` (`location`, `title`, `address`), `contact`
  (`phone_number`, `first_name`, `last_name`, `user_id`), `reply_to_message`.

What we keep: a customer's `message` in a private chat with the bot, one input per update,
keyed by `<chat id>:<message id>` (message ids repeat across chats). What we answer 200 and
do not store: every other kind of update (an edit, `edited_message`, is not a new message:
the original stays as received; `channel_post`s are the company's own broadcasts;
`business_message`s cannot be told apart from the business's own replies without a call to
`getBusinessConnection`; `callback_query`, `my_chat_member`... are no messages), messages
in groups and channels, messages from bots, and service messages (a member joined, a
message pinned...) that carry no text, media, location or contact.

Telegram gives no phone number: the visitor is `telegram:<user id>`, and their messages
wait in the unmatched list until a person attaches them, unless the customer shares their
own contact (`contact.user_id` is the sender's id): that message carries their number.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from crm_core.chat import Message
from crm_core.errors import InvalidInput
from crm_core.phones import normalize_phone
from ingest.chat.common import Loose, chat_message
from ingest.errors import RejectedInput
from ingest.provider import (
    ActiveSource,
    HookAccepted,
    HookAnswer,
    HookRequest,
    Medium,
    OneInput,
    Split,
    StoredSource,
)
from ingest.signatures import BadSignature
from ingest.wire import Region, StrictIn, clean, load_json, valid

TELEGRAM = Medium("telegram", "Telegram", "Telegram message", "telegram", "Telegram")
SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 (a header name)
# The media a Message may carry, as its fields are named; `photo` is a list of sizes, and
# an animation also comes as a `document` (for old clients), so `animation` is read first.
MEDIA_FIELDS = (
    "photo",
    "animation",
    "video",
    "video_note",
    "voice",
    "audio",
    "document",
    "sticker",
)
# The Update fields that are no customer message of a private chat, and why.
IGNORED_UPDATES = {
    "edited_message": "an edit of a message already received (the original is kept)",
    "channel_post": "a post in a channel, not a customer writing",
    "edited_channel_post": "an edit of a channel post",
    "business_message": "a business account's chat (its own replies cannot be told apart)",
    "edited_business_message": "an edit in a business account's chat",
}


class TelegramSourceIn(StrictIn):
    """A Telegram bot: its webhook is set with a secret token we generate (shown once)."""

    kind: Literal["telegram"]
    name: str = Field(min_length=1, max_length=200)
    default_region: Region | None = None


class TgUser(Loose):
    id: int
    is_bot: bool = False
    first_name: str = Field("", max_length=300)
    last_name: str = Field("", max_length=300)
    username: str = Field("", max_length=300)


class TgChat(Loose):
    id: int
    type: str = Field(min_length=1, max_length=32)


class TgFile(Loose):
    """A PhotoSize, Document, Voice, Video, Audio, Animation, VideoNote or Sticker."""

    file_id: str = Field(min_length=1, max_length=500)
    file_name: str = Field("", max_length=500)
    mime_type: str = Field("", max_length=255)
    emoji: str = Field("", max_length=50)


class TgLocation(Loose):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class TgVenue(Loose):
    location: TgLocation
    title: str = Field("", max_length=500)
    address: str = Field("", max_length=1000)


class TgContact(Loose):
    phone_number: str = Field(min_length=1, max_length=64)
    first_name: str = Field("", max_length=300)
    last_name: str = Field("", max_length=300)
    user_id: int | None = None


class TgReplied(Loose):
    message_id: int


class TgMessage(Loose):
    message_id: int
    date: int = Field(ge=0, le=7_258_118_400, description="Unix seconds")  # before 2200
    chat: TgChat
    sender: TgUser | None = Field(None, alias="from")
    text: str = Field("", max_length=20_000)
    caption: str = Field("", max_length=20_000)
    photo: list[TgFile] | None = None
    document: TgFile | None = None
    video: TgFile | None = None
    animation: TgFile | None = None
    audio: TgFile | None = None
    voice: TgFile | None = None
    video_note: TgFile | None = None
    sticker: TgFile | None = None
    location: TgLocation | None = None
    venue: TgVenue | None = None
    contact: TgContact | None = None
    reply_to_message: TgReplied | None = None


class TgUpdate(Loose):
    update_id: int
    message: TgMessage | None = None


_EXAMPLE = {
    "update_id": 815243017,
    "message": {
        "message_id": 42,
        "date": 1795346100,
        "chat": {"id": 123456789, "type": "private", "first_name": "John"},
        "from": {
            "id": 123456789,
            "is_bot": False,
            "first_name": "John",
            "last_name": "Doe",
            "username": "johndoe",
            "language_code": "en",
        },
        "text": "Is the offer still valid?",
    },
}


class Telegram:
    kind = "telegram"
    channel = "chat"
    settings_model = TelegramSourceIn
    secret_settings: tuple[str, ...] = ("secret_token",)
    generated_secret: str | None = "secret_token"  # noqa: S105 (a setting name)
    media = (TELEGRAM,)
    hook_doc = (
        "One Telegram Bot API `Update` per request, as Telegram posts it once the bot's "
        "webhook is set (`setWebhook` with `url` = this hook and `secret_token` = the "
        "source's secret): the header `X-Telegram-Bot-Api-Secret-Token` must carry that "
        "secret. A customer's message in a private chat is stored once (keyed by chat and "
        "message id); edits, channel and business posts, bots' messages, group chats and "
        "other updates (`callback_query`, `my_chat_member`...) are answered 200 and not stored."
    )
    body_docs: Mapping[str, Mapping[str, Any]] = {
        "application/json": {
            "schema": TgUpdate.model_json_schema(by_alias=True),
            "examples": {"a text message": {"value": _EXAMPLE}},
        }
    }

    def verify(self, source: ActiveSource, request: HookRequest, now: datetime) -> None:
        given = request.headers.get(SECRET_HEADER)
        if not given:
            raise BadSignature("the X-Telegram-Bot-Api-Secret-Token header is required")
        expected = source.secrets["secret_token"].encode()
        if not hmac.compare_digest(given.encode(), expected):
            raise BadSignature("X-Telegram-Bot-Api-Secret-Token is not the source's secret token")

    def split(
        self, source: ActiveSource, request: HookRequest, now: datetime, region: str
    ) -> Split:
        read = read_update(source.id, request.body, region)
        if isinstance(read, str):
            return Split(ignored=[read])
        # dedupe_key("chat", source id, "<chat id>:<message id>"): ids are unique per chat
        return Split([OneInput(read.dedupe_key, request.body)])

    def parse(self, source: StoredSource, raw: bytes, received_at: datetime) -> Message:
        read = read_update(source.id, raw, source.region)
        if isinstance(read, str):
            raise RejectedInput(read)
        return read

    def answer(self, accepted: HookAccepted) -> HookAnswer:
        return HookAnswer(200)  # Telegram needs a 2xx; the body is our HookAccepted


def read_update(source_id: int, raw: bytes, region: str) -> Message | str:
    """A Telegram `Update` (as stored) -> Message, or why it is not stored (a text);
    RejectedInput naming the bad field."""
    document = load_json(raw)
    if not isinstance(document, dict):
        raise RejectedInput("body: must be a Telegram Update object")
    update = valid(TgUpdate, document)
    where = f"update {update.update_id}"
    message = update.message
    if message is None:
        kinds = [k for k in document if k != "update_id"]
        kind = kinds[0] if kinds else "nothing"
        return f"{where}: {kind} is {IGNORED_UPDATES.get(kind, 'not a message')}"
    if message.chat.type != "private":
        return f"{where}: a message in a {message.chat.type} chat, not a private one"
    sender = message.sender
    if sender is None:
        return f"{where}: a message without a sender"
    if sender.is_bot:
        return f"{where}: a message from a bot"
    content = _content(message, sender, region)
    if content is None:
        return f"{where}: a service message (no text, media, location or contact)"
    name = " ".join(p for p in (sender.first_name, sender.last_name) if p) or sender.username
    chat_id = message.chat.id
    replied = message.reply_to_message
    found: dict[str, Any] = {
        "source_id": source_id,
        "message_id": f"{chat_id}:{message.message_id}",
        "provider": "telegram",
        "sent_at": datetime.fromtimestamp(message.date, UTC),
        "direction": "incoming",
        "sender_name": clean(name)[:300],
        "visitor_id": f"telegram:{sender.id}",
        "reply_to": f"{chat_id}:{replied.message_id}" if replied else None,
        **content,
    }
    return chat_message(TELEGRAM, **found)


def _content(message: TgMessage, sender: TgUser, region: str) -> dict[str, Any] | None:
    """The message's own part as Message fields (text, media, location, shared contact,
    the customer's phone when they share their own contact); None for a service message."""
    for kind in MEDIA_FIELDS:
        part = getattr(message, kind)
        if part:
            shown = part[-1] if isinstance(part, list) else part  # the largest photo size
            media = {
                "telegram_file_id": shown.file_id,
                "type": kind,
                "name": shown.file_name,
                "media_type": shown.mime_type,
            }
            text = message.caption or (shown.emoji if kind == "sticker" else "")
            return {"text": text, "media": [media], "kind": kind}
    if message.venue is not None:
        venue = message.venue
        place = {**venue.location.model_dump(), "name": venue.title, "address": venue.address}
        return {"location": place, "text": venue.title or venue.address, "kind": "venue"}
    if message.location is not None:
        place = {**message.location.model_dump(), "name": "", "address": ""}
        return {"location": place, "kind": "location"}
    if message.contact is not None:
        shared = message.contact
        name = " ".join(p for p in (shared.first_name, shared.last_name) if p)
        card = {"name": name, "phones": [shared.phone_number], "emails": []}
        found: dict[str, Any] = {"shared_contacts": [card], "text": name, "kind": "contact"}
        if shared.user_id == sender.id:  # their own number, which Telegram has verified
            found["phone"] = _own_phone(shared.phone_number, region)
        return found
    if message.text:
        return {"text": message.text, "kind": "text"}
    return None


def _own_phone(written: str, region: str) -> str | None:
    """The customer's own number (Telegram writes it in international form, often without
    its "+") in E.164; None when it is no number we can read (e.g. an anonymous +888 one):
    the message is then kept without it, waiting to be attached, rather than refused."""
    digits = written.strip()
    try:
        return normalize_phone(digits if digits.startswith("+") else "+" + digits, region)
    except InvalidInput:
        return None


PROVIDER = Telegram()
