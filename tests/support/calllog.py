"""Call-log hook helpers: a webhook source, a card with the customer's phone, signed posts,
calls in the hook's shape and Twilio's, and waits for the stored inputs; shared by the
hook tests (calls, chat, payments, provider SDKs, access, observability, web page)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import func, select

from crm_core.models import InboundItem
from ingest.runtime import Runtime
from ingest.signatures import sign_timestamped
from tests.conftest import FakeClock
from tests.support.provider_sdks import twilio_signature

CUSTOMER = "+33 6 12 34 56 78"


def source(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    fields.setdefault("kind", "calllog")
    fields.setdefault("name", "Phones of the sales team")
    response = api.post("/api/sources", json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


def card_with_phone(
    api: httpx.Client, responsible_id: int, phone: str = CUSTOMER, title: str = "Acme deal"
) -> dict[str, Any]:
    response = api.post(
        "/api/cards",
        json={
            "title": title,
            "entity_type": "deal",
            "stage": "new",
            "responsible_id": responsible_id,
            "contact_phones": [phone],
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def post_signed(
    api: httpx.Client,
    hook: dict[str, Any],
    payload: Any,
    clock: FakeClock,
    secret: str | None = None,
    timestamp: int | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    raw = json.dumps(payload).encode()
    stamp = str(timestamp if timestamp is not None else int(clock().timestamp()))
    return api.post(
        hook["hook_url"].replace("http://testserver", ""),
        content=body if body is not None else raw,
        headers={
            "Content-Type": "application/json",
            "X-Timestamp": stamp,
            "X-Signature": sign_timestamped(secret or hook["secret"], stamp, raw),
        },
    )


def call(number: str, call_id: str, employee: Any, **fields: Any) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "employee": employee,
        "number": number,
        "direction": fields.pop("direction", "incoming"),
        "outcome": fields.pop("outcome", "missed"),
        "started_at": fields.pop("started_at", "2026-11-22T10:15:00+01:00"),
        **fields,
    }


def stored_count(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(InboundItem)) or 0)


def all_done(api: httpx.Client, count: int) -> bool:
    items = api.get("/api/inbound", params={"limit": 1000}).json()["items"]
    return len(items) == count and all(i["status"] != "received" for i in items)


TWILIO_NO_ANSWER = {  # a status callback as Twilio documents it (Voice webhooks)
    "AccountSid": "AC25e16e9a716a4a1786a7c83f58e30482",
    "ApiVersion": "2010-04-01",
    "CallSid": "CA9f3e1b2a4c5d6e7f8091a2b3c4d5e6f7",
    "CallStatus": "no-answer",
    "CallDuration": "0",
    "Called": "+14155550100",
    "Caller": "+33612345678",
    "Direction": "inbound",
    "From": "+33612345678",
    "To": "+14155550100",
    "Timestamp": "Sun, 22 Nov 2026 09:15:00 +0000",
    "CallbackSource": "call-progress-events",
    "SequenceNumber": "0",
}


def post_twilio_form(
    api: httpx.Client, path: str, params: dict[str, str], token: str
) -> httpx.Response:
    """Post as Twilio does: form-encoded, signed (by Twilio's SDK) over the public URL it
    called (not the address behind our proxy), `https://crm.example.com` + path and query."""
    signature = twilio_signature(token, "https://crm.example.com" + path, params)
    return api.post(
        path,
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
