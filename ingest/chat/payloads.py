"""Provider payloads -> `crm_core.chat.Message` or `Status`: our widget JSON, the WhatsApp
Cloud API webhook and Twilio's SMS/WhatsApp webhooks. Pure functions of the stored bytes,
used by the hook (to answer 422 at once) and again by the worker.

A WhatsApp request may carry many messages and statuses: `split_whatsapp` cuts it into one
stored envelope per event (its message or status, with the metadata and sender profiles).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from crm_core import schemas
from crm_core.chat import Message, Status
from crm_core.models import dedupe_key
from ingest.errors import RejectedInput
from ingest.payloads import clean, form_params, load_json, number_field, valid

Event = Message | Status
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")


@dataclass(frozen=True)
class OneEvent:
    """An event of a request that passed validation, with its key and the bytes to store."""

    dedupe_key: str
    raw: bytes


def event_key(source_id: int, event: Event) -> str:
    """One key per provider message, and per (message, status) for delivery reports."""
    if isinstance(event, Status):
        return dedupe_key("chat-status", source_id, event.message_id, event.status)
    return event.dedupe_key


# --- our chat widget -------------------------------------------------------------------


class WidgetVisitor(BaseModel):
    id: str = Field(min_length=1, max_length=200, description="the widget's visitor id")
    name: str = Field("", max_length=300)
    email: schemas.EmailAddress | None = None
    phone: str | None = Field(None, min_length=1, max_length=64, description="any format")


class WidgetAttachment(BaseModel):
    url: HttpUrl
    name: str = Field("", max_length=255)
    media_type: str = Field("", max_length=255)


class WidgetMessageIn(BaseModel):
    """A message of a website chat: the visitor's (incoming) or an employee's reply."""

    type: Literal["message"] = "message"
    message_id: str = Field(min_length=1, max_length=200, description="the widget's id")
    visitor: WidgetVisitor
    text: str = Field("", max_length=20_000)
    sent_at: schemas.Moment = Field(description="ISO 8601 with its UTC offset")
    attachments: list[WidgetAttachment] = Field(default_factory=list, max_length=20)
    direction: Literal["incoming", "outgoing"] = "incoming"
    employee: schemas.UserRef | None = Field(None, description="who replied (outgoing)")
    reply_to: str | None = Field(None, max_length=200, description="message_id answered")


class WidgetStatusIn(BaseModel):
    """A delivery report on a message the widget showed to the visitor."""

    type: Literal["status"]
    message_id: str = Field(min_length=1, max_length=200)
    status: Literal["sent", "delivered", "read", "failed"]
    at: schemas.Moment
    error: str | None = Field(None, max_length=1000)


def widget_event(source_id: int, raw: bytes, region: str) -> Event:
    data = load_json(raw)
    if isinstance(data, dict) and data.get("type") == "status":
        status = valid(WidgetStatusIn, data)
        return Status(source_id, status.message_id, status.status, status.at, status.error)
    message = valid(WidgetMessageIn, data)
    if not message.text.strip() and not message.attachments:
        raise RejectedInput("text: a message needs a text or attachments")
    if message.direction == "outgoing" and message.employee is None:
        raise RejectedInput("employee: required for an outgoing message (who replied)")
    visitor = message.visitor
    return _message(
        source_id=source_id,
        message_id=message.message_id,
        channel="chat",
        provider="widget",
        sent_at=message.sent_at,
        direction=message.direction,
        sender_name=visitor.name,
        phone=number_field(visitor.phone, region, "visitor.phone") if visitor.phone else None,
        email=str(visitor.email).lower() if visitor.email else None,
        visitor_id=visitor.id,
        employee=str(message.employee) if message.employee is not None else None,
        text=message.text,
        media=[
            {"url": str(a.url), "name": a.name, "media_type": a.media_type}
            for a in message.attachments
        ],
        reply_to=message.reply_to,
        kind="text" if message.text.strip() else "media",
    )


# --- WhatsApp Cloud API ----------------------------------------------------------------


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class WaText(_Loose):
    body: str = Field(max_length=20_000)


class WaMedia(_Loose):
    id: str = Field(min_length=1, max_length=200)
    mime_type: str = ""
    sha256: str = ""
    caption: str = ""
    filename: str = ""
    url: HttpUrl | None = None


class WaLocation(_Loose):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str = ""
    address: str = ""


class WaReaction(_Loose):
    message_id: str = Field(min_length=1, max_length=200)
    emoji: str = ""


class WaContext(_Loose):
    id: str | None = None


class WaName(_Loose):
    formatted_name: str = ""


class WaPhone(_Loose):
    phone: str = ""
    wa_id: str = ""


class WaEmail(_Loose):
    email: str = ""


class WaSharedContact(_Loose):
    name: WaName = Field(default_factory=WaName)
    phones: list[WaPhone] = Field(default_factory=list)
    emails: list[WaEmail] = Field(default_factory=list)


class WaButton(_Loose):
    text: str = ""


class WaMessage(_Loose):
    """A message of `value.messages` (the customer's) or `value.message_echoes` (sent from
    the business's own WhatsApp app, `to` the customer)."""

    sender: str = Field(alias="from", pattern=r"^\+?[0-9]{5,20}$")
    to: str | None = Field(None, pattern=r"^\+?[0-9]{5,20}$")
    id: str = Field(min_length=1, max_length=200)
    timestamp: str = Field(pattern=r"^[0-9]{1,10}$", description="Unix seconds")
    type: str = Field(min_length=1, max_length=32)
    text: WaText | None = None
    image: WaMedia | None = None
    video: WaMedia | None = None
    audio: WaMedia | None = None
    document: WaMedia | None = None
    sticker: WaMedia | None = None
    location: WaLocation | None = None
    contacts: list[WaSharedContact] | None = None
    reaction: WaReaction | None = None
    button: WaButton | None = None
    interactive: dict[str, Any] | None = None
    context: WaContext | None = None


class WaError(_Loose):
    code: int | None = None
    title: str = ""


class WaStatus(_Loose):
    id: str = Field(min_length=1, max_length=200)
    status: str = Field(min_length=1, max_length=32)
    timestamp: str = Field(pattern=r"^[0-9]{1,10}$", description="Unix seconds")
    recipient_id: str = ""
    errors: list[WaError] = Field(default_factory=list)


WHATSAPP_FIELDS = {"messages": "messages", "smb_message_echoes": "message_echoes"}


def split_whatsapp(
    source_id: int, body: bytes, region: str, phone_number_id: str | None = None
) -> tuple[list[OneEvent], list[schemas.HookRejection], list[str]]:
    """The valid events of a Cloud API webhook, the bad ones (named by their path), and the
    changes we do not take (other webhook fields; with `phone_number_id`, other business
    numbers). A body that is no webhook at all raises RejectedInput naming what is wrong."""
    document = load_json(body)
    if not isinstance(document, dict) or document.get("object") != "whatsapp_business_account":
        raise RejectedInput('object: must be "whatsapp_business_account"')
    entries = document.get("entry")
    if not isinstance(entries, list):
        raise RejectedInput("entry: must be a list")
    good: list[OneEvent] = []
    bad: list[schemas.HookRejection] = []
    ignored: list[str] = []
    for e, entry in enumerate(entries):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise RejectedInput(f"entry[{e}].changes: must be a list")
        for c, change in enumerate(changes):
            where = f"entry[{e}].changes[{c}]"
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                raise RejectedInput(f"{where}.value: must be an object")
            if change.get("field") not in WHATSAPP_FIELDS:
                ignored.append(f"{where}: field {change.get('field')!r} is not a message")
                continue
            value = change["value"]
            metadata = value.get("metadata")
            number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            if phone_number_id is not None and str(number) != phone_number_id:
                ignored.append(f"{where}: for business number {number}, not this source's")
                continue
            common = {"metadata": metadata, "contacts": value.get("contacts")}
            for name in ("messages", "statuses", "message_echoes"):
                elements = value.get(name) or []
                if not isinstance(elements, list):
                    raise RejectedInput(f"{where}.value.{name}: must be a list")
                for n, element in enumerate(elements):
                    path = f"{where}.value.{name}[{n}]"
                    raw = json.dumps(
                        {**common, "kind": name, "event": element, "path": path},
                        ensure_ascii=False,
                    ).encode()
                    try:
                        event = whatsapp_event(source_id, raw, region)
                    except RejectedInput as exc:
                        some_id = element.get("id") if isinstance(element, dict) else None
                        bad.append(
                            schemas.HookRejection(
                                index=len(good) + len(bad),
                                message_id=str(some_id) if some_id else None,
                                error=exc.reason,
                            )
                        )
                        continue
                    good.append(OneEvent(event_key(source_id, event), raw))
    return good, bad, ignored


def whatsapp_event(source_id: int, raw: bytes, region: str) -> Event:
    """One stored envelope (see `split_whatsapp`) -> Message or Status."""
    envelope = load_json(raw)
    path = str(envelope.get("path", "event"))
    if envelope.get("kind") == "statuses":
        status = valid(WaStatus, envelope.get("event"), path)
        error = "; ".join(f"{x.code}: {x.title}" for x in status.errors) or None
        return Status(source_id, status.id, status.status, _unix(status.timestamp), error)
    message = valid(WaMessage, envelope.get("event"), path)
    outgoing = envelope.get("kind") == "message_echoes"
    if outgoing and not message.to:
        raise RejectedInput(f"{path}.to: Field required")
    customer = str(message.to if outgoing else message.sender)
    field = f"{path}.{'to' if outgoing else 'from'}"
    phone = number_field("+" + customer.lstrip("+"), region, field)
    name = ""
    profiles = envelope.get("contacts")
    for profile in profiles if isinstance(profiles, list) else []:
        if isinstance(profile, dict) and profile.get("wa_id") == customer.lstrip("+"):
            shown = profile.get("profile")
            name = str(shown.get("name") or "") if isinstance(shown, dict) else ""
    content = _whatsapp_content(message, path)
    return _message(
        source_id=source_id,
        message_id=message.id,
        channel="whatsapp",
        provider="whatsapp",
        sent_at=_unix(message.timestamp),
        direction="outgoing" if outgoing else "incoming",
        sender_name="" if outgoing else name,
        phone=phone,
        reply_to=message.context.id if message.context else None,
        kind=message.type,
        **content,
    )


def _whatsapp_content(message: WaMessage, path: str) -> dict[str, Any]:
    """The message's own part (`text`, `image`, `location`...) as Message fields."""
    kind = message.type
    part = getattr(message, kind, None) if kind in WaMessage.model_fields else None
    if part is None and kind in (*MEDIA_KINDS, "text", "location", "contacts", "reaction"):
        raise RejectedInput(f"{path}.{kind}: Field required for a {kind} message")
    if isinstance(part, WaText):
        return {"text": part.body}
    if isinstance(part, WaMedia):
        return {
            "text": part.caption,
            "media": [
                {
                    "media_id": part.id,
                    "url": str(part.url) if part.url else None,
                    "name": part.filename,
                    "media_type": part.mime_type,
                    "sha256": part.sha256,
                    "caption": part.caption,
                }
            ],
        }
    if isinstance(part, WaLocation):
        return {"location": part.model_dump(), "text": part.name or part.address}
    if isinstance(part, WaReaction):
        return {"reaction": {"message_id": part.message_id, "emoji": part.emoji}}
    if kind == "contacts" and message.contacts is not None:
        shared = [
            {
                "name": c.name.formatted_name,
                "phones": [p.phone for p in c.phones if p.phone],
                "emails": [m.email for m in c.emails if m.email],
            }
            for c in message.contacts
        ]
        names = ", ".join(c.name.formatted_name for c in message.contacts)
        return {"shared_contacts": shared, "text": names}
    if isinstance(part, WaButton):
        return {"text": part.text}
    if kind == "interactive" and message.interactive is not None:
        reply = message.interactive.get("button_reply") or message.interactive.get("list_reply")
        title = reply.get("title") if isinstance(reply, dict) else None
        return {"text": str(title or "")}
    # order, system, unsupported...: still the customer writing; the type says what it was.
    return {"text": ""}


def _unix(stamp: str) -> datetime:
    return datetime.fromtimestamp(int(stamp), UTC)


def _message(**fields: Any) -> Message:
    """A Message whose free text a database column takes (no NUL, a name that fits)."""
    fields["text"] = clean(fields.get("text") or "")
    fields["sender_name"] = clean(fields.get("sender_name") or "")[:300]
    return Message(**fields)


# --- Twilio SMS and WhatsApp -----------------------------------------------------------


class TwilioMessageIn(_Loose):
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


class TwilioStatusIn(_Loose):
    """A Twilio status callback on a message the company sent."""

    MessageSid: str = Field(pattern=r"^(SM|MM)[0-9a-fA-F]{32}$")
    MessageStatus: str = Field(min_length=1, max_length=32)
    ErrorCode: str | None = None


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
    return _message(
        source_id=source_id,
        message_id=message.MessageSid,
        channel="whatsapp" if whatsapp else "sms",
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
