"""API shapes of the inbound store: raw inputs and their status, legal holds, the user's own
refused inputs, and attaching an unmatched one (`ingest.http.inbound`, `.unmatched`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from ingest.wire import DbId, StrictIn


class InboundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    channel: str
    recipient: str
    status: str
    reason: str | None
    error: str | None
    attempts: int
    card_id: int | None
    received_at: datetime
    finished_at: datetime | None
    legal_hold: bool
    purged_at: datetime | None = Field(
        description="when retention deleted the raw input (null: still kept)"
    )


class LegalHoldIn(StrictIn):
    hold: bool


class InboundListOut(BaseModel):
    items: list[InboundOut]


class MyInboundOut(BaseModel):
    """One of the user's own inputs that did not simply land on its card."""

    id: int
    status: str = Field(
        description="rejected, held or failed; processed when the input is on its card but "
        "carries a notice (`reason`)"
    )
    received_at: datetime = Field(description="when the front door accepted it (the SMTP 250)")
    finished_at: datetime | None = Field(description="when processing refused, held or ended it")
    recipient: str = Field(description="the archive address it was sent to")
    subject: str | None = Field(
        description="the Subject header of the message as received (null: none, or the raw "
        "input was deleted by retention)"
    )
    reason: str | None = Field(description="the reason as stored, for support")
    reason_text: str = Field(
        description="the reason in plain words for the person who sent it, e.g. "
        "`address revoked on 3 Dec`"
    )


class MyInboundListOut(BaseModel):
    items: list[MyInboundOut] = Field(description="newest first")


class AttachIn(StrictIn):
    card_id: DbId
