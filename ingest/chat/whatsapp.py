"""The `whatsapp` provider: the WhatsApp Cloud API webhook (`X-Hub-Signature-256`, keyed with
the Meta app's secret) and Meta's GET handshake. Hook: one stored envelope per message or
status of a request; worker: one envelope -> `crm_core.chat.Message` or `Status`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, HttpUrl

from crm_core.chat import Status
from crm_core.errors import Forbidden, InvalidInput
from ingest.chat.common import Event, Loose, chat_message, event_key
from ingest.chat.processing import WHATSAPP
from ingest.errors import RejectedInput
from ingest.provider import (
    ActiveSource,
    HookAccepted,
    HookAnswer,
    HookRejection,
    HookRequest,
    OneInput,
    Split,
    StoredSource,
)
from ingest.signatures import check_hub
from ingest.wire import Region, StrictIn, load_json, number_field, valid

MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
# Webhook fields we take -> the list of `value` their messages are in.
WHATSAPP_FIELDS = {"messages": "messages", "smb_message_echoes": "message_echoes"}


class WhatsAppSourceIn(StrictIn):
    """A WhatsApp Cloud API phone number (Meta app webhooks)."""

    kind: Literal["whatsapp"]
    name: str = Field(min_length=1, max_length=200)
    phone_number_id: str | None = Field(
        None,
        pattern=r"^[0-9]{1,32}$",
        description="take only events of this business number (`metadata.phone_number_id`): "
        "needed when one Meta app, one app secret, serves several numbers",
    )
    app_secret: str = Field(
        min_length=1, max_length=200, description="the Meta app's secret (never shown again)"
    )
    verify_token: str = Field(
        min_length=8,
        max_length=200,
        description="the token typed in Meta's webhook settings (never shown again)",
    )
    default_region: Region | None = None


class WaText(Loose):
    body: str = Field(max_length=20_000)


class WaMedia(Loose):
    id: str = Field(min_length=1, max_length=200)
    mime_type: str = ""
    sha256: str = ""
    caption: str = ""
    filename: str = ""
    url: HttpUrl | None = None


class WaLocation(Loose):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str = ""
    address: str = ""


class WaReaction(Loose):
    message_id: str = Field(min_length=1, max_length=200)
    emoji: str = ""


class WaContext(Loose):
    id: str | None = None


class WaName(Loose):
    formatted_name: str = ""


class WaPhone(Loose):
    phone: str = ""
    wa_id: str = ""


class WaEmail(Loose):
    email: str = ""


class WaSharedContact(Loose):
    name: WaName = Field(default_factory=WaName)
    phones: list[WaPhone] = Field(default_factory=list)
    emails: list[WaEmail] = Field(default_factory=list)


class WaButton(Loose):
    text: str = ""


class WaMessage(Loose):
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


class WaError(Loose):
    code: int | None = None
    title: str = ""


class WaStatus(Loose):
    id: str = Field(min_length=1, max_length=200)
    status: str = Field(min_length=1, max_length=32)
    timestamp: str = Field(pattern=r"^[0-9]{1,10}$", description="Unix seconds")
    recipient_id: str = ""
    errors: list[WaError] = Field(default_factory=list)


class WhatsApp:
    kind = "whatsapp"
    channel = "chat"
    settings_model = WhatsAppSourceIn
    secret_settings: tuple[str, ...] = ("app_secret", "verify_token")
    generated_secret: str | None = None
    media = (WHATSAPP,)
    hook_doc = (
        "The Cloud API webhook as Meta sends it, with `X-Hub-Signature-256`. A message id "
        "already received is answered 200 again and changes nothing."
    )
    body_docs: Mapping[str, Mapping[str, Any]] = {}

    def verify(self, source: ActiveSource, request: HookRequest, now: datetime) -> None:
        check_hub(
            source.secrets["app_secret"],
            request.body,
            request.headers.get("x-hub-signature-256"),
        )

    def split(
        self, source: ActiveSource, request: HookRequest, now: datetime, region: str
    ) -> Split:
        split = split_whatsapp(
            source.id, request.body, region, source.settings.get("phone_number_id")
        )
        if not split.inputs and split.rejected:
            raise RejectedInput("; ".join(r.error for r in split.rejected))
        return split

    def parse(self, source: StoredSource, raw: bytes, received_at: datetime) -> Event:
        return whatsapp_event(source.id, raw, source.region)

    def answer(self, accepted: HookAccepted) -> HookAnswer:
        return HookAnswer(200)  # Meta wants a 200

    def handshake(self, source: ActiveSource, query: Mapping[str, str]) -> str:
        """Meta's handshake when a webhook URL is saved: the challenge back if the verify
        token is the source's (compared in constant time), else Forbidden."""
        expected = source.secrets["verify_token"].encode()
        token = query.get("hub.verify_token") or ""
        if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            token.encode(), expected
        ):
            raise Forbidden("hub.mode must be subscribe and hub.verify_token the source's token")
        challenge = query.get("hub.challenge")
        if not challenge:
            raise InvalidInput("hub.challenge: required")
        return challenge


def split_whatsapp(
    source_id: int, body: bytes, region: str, phone_number_id: str | None = None
) -> Split:
    """The valid events of a Cloud API webhook, the bad ones (named by their path), and the
    changes we do not take (other webhook fields; with `phone_number_id`, other business
    numbers). A body that is no webhook at all raises RejectedInput naming what is wrong."""
    document = load_json(body)
    if not isinstance(document, dict) or document.get("object") != "whatsapp_business_account":
        raise RejectedInput('object: must be "whatsapp_business_account"')
    entries = document.get("entry")
    if not isinstance(entries, list):
        raise RejectedInput("entry: must be a list")
    split = Split()
    for e, entry in enumerate(entries):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise RejectedInput(f"entry[{e}].changes: must be a list")
        for c, change in enumerate(changes):
            where = f"entry[{e}].changes[{c}]"
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                raise RejectedInput(f"{where}.value: must be an object")
            if change.get("field") not in WHATSAPP_FIELDS:
                split.ignored.append(f"{where}: field {change.get('field')!r} is not a message")
                continue
            value = change["value"]
            metadata = value.get("metadata")
            number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            if phone_number_id is not None and str(number) != phone_number_id:
                split.ignored.append(f"{where}: for business number {number}, not this source's")
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
                        split.rejected.append(
                            HookRejection(
                                index=len(split.inputs) + len(split.rejected),
                                message_id=str(some_id) if some_id else None,
                                error=exc.reason,
                            )
                        )
                        continue
                    split.inputs.append(OneInput(event_key(source_id, event), raw))
    return split


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
    return chat_message(
        WHATSAPP,
        source_id=source_id,
        message_id=message.id,
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


PROVIDER = WhatsApp()
