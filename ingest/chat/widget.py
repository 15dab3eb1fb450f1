"""The `widget` provider: our website chat widget's JSON (one message, or a delivery report),
signed with a secret we generate. Hook: the one event of a request; worker: the stored body
-> `crm_core.chat.Message` or `Status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl

from crm_core.chat import Status
from ingest.chat.common import Event, chat_message, event_key
from ingest.chat.processing import CHAT
from ingest.errors import RejectedInput
from ingest.provider import ActiveSource, HookRequest, OneInput, Split, StoredSource
from ingest.signatures import TimestampSigned
from ingest.wire import (
    EmailAddress,
    Moment,
    Region,
    StrictIn,
    UserRef,
    load_json,
    number_field,
    valid,
)


class WidgetSourceIn(StrictIn):
    """Our website chat widget: requests signed like the call-log app's (secret shown once)."""

    kind: Literal["widget"]
    name: str = Field(min_length=1, max_length=200)
    default_region: Region | None = None


class WidgetVisitor(BaseModel):
    id: str = Field(min_length=1, max_length=200, description="the widget's visitor id")
    name: str = Field("", max_length=300)
    email: EmailAddress | None = None
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
    sent_at: Moment = Field(description="ISO 8601 with its UTC offset")
    attachments: list[WidgetAttachment] = Field(default_factory=list, max_length=20)
    direction: Literal["incoming", "outgoing"] = "incoming"
    employee: UserRef | None = Field(None, description="who replied (outgoing)")
    reply_to: str | None = Field(None, max_length=200, description="message_id answered")


class WidgetStatusIn(BaseModel):
    """A delivery report on a message the widget showed to the visitor."""

    type: Literal["status"]
    message_id: str = Field(min_length=1, max_length=200)
    status: Literal["sent", "delivered", "read", "failed"]
    at: Moment
    error: str | None = Field(None, max_length=1000)


_EXAMPLE = {
    "message_id": "w-20261122-0001",
    "visitor": {"id": "v-42", "name": "John Doe", "email": "john.doe@acme.com", "phone": None},
    "text": "Hello, is the offer still valid?",
    "sent_at": "2026-11-22T10:15:00+01:00",
    "attachments": [{"url": "https://cdn.example.com/f/quote.pdf", "name": "quote.pdf"}],
}


class Widget(TimestampSigned):
    kind = "widget"
    channel = "chat"
    settings_model = WidgetSourceIn
    media = (CHAT,)
    hook_doc = (
        'One message (or `{"type": "status", "message_id", "status", "at"}` for a delivery '
        "report), signed like the call-log hook: `X-Timestamp` and `X-Signature: "
        'sha256=<hex HMAC-SHA256 of timestamp + "." + raw body>`. A message id already '
        "received is answered 202 again and changes nothing."
    )
    body_docs: Mapping[str, Mapping[str, Any]] = {
        "application/json": {
            "schema": WidgetMessageIn.model_json_schema(),
            "examples": {"a visitor's message": {"value": _EXAMPLE}},
        }
    }

    def split(
        self, source: ActiveSource, request: HookRequest, now: datetime, region: str
    ) -> Split:
        event = widget_event(source.id, request.body, region)
        return Split([OneInput(event_key(source.id, event), request.body)])

    def parse(self, source: StoredSource, raw: bytes, received_at: datetime) -> Event:
        return widget_event(source.id, raw, source.region)


def widget_event(source_id: int, raw: bytes, region: str) -> Event:
    """The widget's JSON (as stored) -> Message, or Status for a delivery report."""
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
    return chat_message(
        CHAT,
        source_id=source_id,
        message_id=message.message_id,
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


PROVIDER = Widget()
