"""What the chat providers share: the event a stored input becomes (a `Message` or a
delivery `Status`), its dedupe key, and a Message made ready for the database.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from crm_core.chat import Message, Status
from crm_core.models import dedupe_key
from ingest.provider import Medium
from ingest.wire import clean

Event = Message | Status


class Loose(BaseModel):
    """A provider's object: fields we do not read are ignored, so a new one never breaks us."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def event_key(source_id: int, event: Event) -> str:
    """One key per provider message, and per (message, status) for delivery reports."""
    if isinstance(event, Status):
        return dedupe_key("chat-status", source_id, event.message_id, event.status)
    return event.dedupe_key


def chat_message(medium: Medium, **fields: Any) -> Message:
    """A Message of `medium` (its history type and the words for it) whose free text a
    database column takes (no NUL, a name that fits)."""
    fields["text"] = clean(fields.get("text") or "")
    fields["sender_name"] = clean(fields.get("sender_name") or "")[:300]
    return Message(channel=medium.type, noun=medium.noun, **fields)
