"""API shapes of IMAP mailboxes to read (`ingest.http.mailboxes`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ingest.wire import LOOPBACK, Host, StrictIn, whole


class MailboxIn(StrictIn):
    """An IMAP mailbox to read (for companies that cannot point an MX record at us)."""

    # The rules across fields, as the schema states them; `ingest.mailbox.mailboxes`
    # checks them (422 naming the field).
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {  # exactly one secret
                    "oneOf": [
                        {"required": ["password"], "properties": {"password": {"type": "string"}}},
                        {
                            "required": ["oauth2_token"],
                            "properties": {"oauth2_token": {"type": "string"}},
                        },
                    ]
                },
                {  # no TLS only on this machine
                    "if": {"properties": {"security": {"const": "none"}}},
                    "then": {"properties": {"host": {"pattern": f"^{LOOPBACK}$"}}},
                },
            ]
        }
    )

    name: str = Field("", max_length=200)
    host: Host
    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(whole)]
    security: Literal["tls", "starttls", "none"] = Field(
        description='"none" only for this machine (localhost, 127.x.x.x, ::1): elsewhere it '
        "would send the password in clear"
    )
    username: str = Field(min_length=1, max_length=320)
    password: str | None = Field(None, min_length=1, max_length=1000, description="never shown")
    oauth2_token: str | None = Field(
        None, min_length=1, max_length=4000, description="XOAUTH2 access token, never shown"
    )
    folder: str = Field("INBOX", min_length=1, max_length=255)
    processed_folder: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="move taken messages there; null (or `folder` itself): flag them "
        "\\Seen where they are",
    )


class MailboxOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    host: str
    port: int
    security: str
    username: str
    auth: str
    folder: str
    processed_folder: str | None
    uidvalidity: int | None
    last_uid: int
    created_at: datetime
    revoked_at: datetime | None
    last_ok_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


class MailboxListOut(BaseModel):
    items: list[MailboxOut]
