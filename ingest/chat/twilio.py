"""The `twilio` provider: Twilio Programmable Messaging, SMS and WhatsApp (form-encoded,
`X-Twilio-Signature` with the account's auth token). Hook: the one message or status
callback of a request, answered with empty TwiML; worker: -> `Message` or `Status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, HttpUrl

from crm_core.chat import Status
from ingest.chat.common import Event, Loose, chat_message, event_key
from ingest.chat.processing import SMS, WHATSAPP
from ingest.errors import RejectedInput
from ingest.provider import (
    ActiveSource,
    HookAccepted,
    HookAnswer,
    HookRequest,
    OneInput,
    Split,
    StoredSource,
)
from ingest.signatures import TwilioSigned
from ingest.wire import Region, StrictIn, form_params, number_field, valid

# Twilio reads the answer to a message webhook as TwiML: an empty one sends no reply.
TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class TwilioMessagingSourceIn(StrictIn):
    """Twilio Programmable Messaging: SMS and WhatsApp, signed with the auth token."""

    kind: Literal["twilio"]
    name: str = Field(min_length=1, max_length=200)
    auth_token: str = Field(min_length=1, max_length=200, description="never shown again")
    public_base_url: HttpUrl = Field(
        description="scheme://host[:port] Twilio calls, e.g. https://crm.example.com; the "
        "signature covers this plus the request's path and query, whatever a proxy changes"
    )
    default_region: Region | None = None


class TwilioMessageIn(Loose):
    """The fields we read of Twilio's incoming-message webhook (form-encoded)."""

    MessageSid: str = Field(pattern=r"^(SM|MM)[0-9a-fA-F]{32}$")
    AccountSid: str = Field(min_length=1, max_length=64)
    From: str = Field(min_length=1, max_length=80)
    To: str = Field(min_length=1, max_length=80)
    Body: str = Field("", max_length=20_000)
    NumMedia: int = Field(0, ge=0, le=20)
    ProfileName: str = Field("", max_length=300)
    Latitude: float | None = Field(None, ge=-90, le=90)
    Longitude: float | None = Field(None, ge=-180, le=180)
    Address: str = ""
    Label: str = ""
    OriginalRepliedMessageSid: str | None = None


class TwilioStatusIn(Loose):
    """A Twilio status callback on a message the company sent."""

    MessageSid: str = Field(pattern=r"^(SM|MM)[0-9a-fA-F]{32}$")
    MessageStatus: str = Field(min_length=1, max_length=32)
    ErrorCode: str | None = None


class TwilioMessaging(TwilioSigned):
    kind = "twilio"
    channel = "chat"
    settings_model = TwilioMessagingSourceIn
    media = (SMS, WHATSAPP)
    hook_doc = (
        "Twilio's form-encoded incoming message webhook or message status callback, with "
        "`X-Twilio-Signature`. A message id already received is answered 200 again and "
        "changes nothing."
    )
    body_docs: Mapping[str, Mapping[str, Any]] = {
        "application/x-www-form-urlencoded": {"schema": TwilioMessageIn.model_json_schema()}
    }

    def split(
        self, source: ActiveSource, request: HookRequest, now: datetime, region: str
    ) -> Split:
        event = twilio_event(source.id, request.body, region, now)
        return Split([OneInput(event_key(source.id, event), request.body)])

    def parse(self, source: StoredSource, raw: bytes, received_at: datetime) -> Event:
        return twilio_event(source.id, raw, source.region, received_at)

    def answer(self, accepted: HookAccepted) -> HookAnswer:
        return HookAnswer(200, TWIML_EMPTY, "text/xml")


def twilio_event(source_id: int, raw: bytes, region: str, received_at: datetime) -> Event:
    """Twilio's webhook (as stored) -> Message, or Status for a status callback."""
    params = dict(form_params(raw))
    if params.get("MessageStatus") not in (None, "received", "receiving"):
        status = valid(TwilioStatusIn, params)
        error = f"Twilio error {status.ErrorCode}" if status.ErrorCode else None
        return Status(source_id, status.MessageSid, status.MessageStatus, received_at, error)
    message = valid(TwilioMessageIn, params)
    whatsapp = message.From.startswith("whatsapp:")
    phone = number_field(message.From.removeprefix("whatsapp:"), region, "From")
    media = []
    for n in range(message.NumMedia):
        url = params.get(f"MediaUrl{n}")
        if not url:
            raise RejectedInput(f"MediaUrl{n}: missing, NumMedia is {message.NumMedia}")
        if urlsplit(url).scheme not in ("http", "https"):
            raise RejectedInput(f"MediaUrl{n}: must be an http or https URL")
        media.append({"url": url, "media_type": params.get(f"MediaContentType{n}", "")})
    location = None
    if message.Latitude is not None and message.Longitude is not None:
        location = {
            "latitude": message.Latitude,
            "longitude": message.Longitude,
            "name": message.Label,
            "address": message.Address,
        }
    if not message.Body and not media and location is None:
        raise RejectedInput("Body: a message needs a text, media or a location")
    return chat_message(
        WHATSAPP if whatsapp else SMS,
        source_id=source_id,
        message_id=message.MessageSid,
        provider="twilio",
        sent_at=received_at,
        sender_name=message.ProfileName,
        phone=phone,
        text=message.Body,
        media=media,
        location=location,
        reply_to=message.OriginalRepliedMessageSid,
        kind="media" if media and not message.Body else "location" if location else "text",
    )


PROVIDER = TwilioMessaging()
