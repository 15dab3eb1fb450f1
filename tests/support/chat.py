"""Chat hook helpers: widget, WhatsApp (Meta's Cloud API) and Twilio sources, payloads in
each provider's documented shape, signed posts, and the card and Kanban as the API shows
them; shared by the chat tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

from crm_core.models import utcnow
from ingest.signatures import (
    hub_signature,
    sign_timestamped,
)
from tests.conftest import FakeClock
from tests.support.calllog import post_twilio_form, source

APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "a-verify-token-we-chose"
TWILIO_TOKEN = "twilio-auth-token"
CUSTOMER_WA = "33612345678"  # WhatsApp ids are E.164 digits without "+"


def kanban(api: httpx.Client) -> list[int]:
    response = api.get("/api/kanban", params={"entity_type": "deal", "stage": "new"})
    return [c["id"] for c in response.json()["cards"]]


def card(api: httpx.Client, card_id: int) -> dict[str, Any]:
    return dict(api.get(f"/api/cards/{card_id}").json())


def path_of(hook: dict[str, Any]) -> str:
    return f"/hooks/chat/{hook['id']}"


# --- the widget (our JSON) -------------------------------------------------------------


def post_widget(
    api: httpx.Client,
    hook: dict[str, Any],
    payload: dict[str, Any],
    clock: FakeClock,
    secret: str | None = None,
    timestamp: int | None = None,
) -> httpx.Response:
    raw = json.dumps(payload).encode()
    stamp = str(timestamp if timestamp is not None else int(clock().timestamp()))
    return api.post(
        path_of(hook),
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Timestamp": stamp,
            "X-Signature": sign_timestamped(secret or hook["secret"], stamp, raw),
        },
    )


def visitor_message(message_id: str, text: str = "Hello", **fields: Any) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "visitor": fields.pop("visitor", {"id": "v-42", "name": "John Doe"}),
        "text": text,
        "sent_at": fields.pop("sent_at", "2026-11-22T10:15:00+01:00"),
        **fields,
    }


JOHN = {"id": "v-42", "name": "John Doe", "email": "John.Doe@acme.com"}


# --- WhatsApp Cloud API ----------------------------------------------------------------


def whatsapp_source(api: httpx.Client) -> dict[str, Any]:
    return source(
        api,
        kind="whatsapp",
        name="WhatsApp Business",
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
    )


def webhook(field: str = "messages", **value: Any) -> dict[str, Any]:
    """A Cloud API webhook as Meta documents it (one entry, one change)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": field,
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def from_customer(message_id: str, kind: str, part: Any, **extra: Any) -> dict[str, Any]:
    return {
        "from": CUSTOMER_WA,
        "id": message_id,
        "timestamp": "1763803000",
        "type": kind,
        kind: part,
        **extra,
    }


PROFILE = [{"profile": {"name": "John Doe"}, "wa_id": CUSTOMER_WA}]


def post_whatsapp(
    api: httpx.Client, hook: dict[str, Any], payload: Any, secret: str = APP_SECRET
) -> httpx.Response:
    raw = json.dumps(payload).encode()
    return api.post(
        path_of(hook),
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": hub_signature(secret, raw),
        },
    )


def comment(api: httpx.Client, clock: FakeClock, card_id: int, author_id: int) -> None:
    """A colleague's comment focuses the card; at the real time, as the worker's events."""
    clock.now = utcnow()
    response = api.post(
        f"/api/cards/{card_id}/comments", json={"text": "news", "author_id": author_id}
    )
    assert response.status_code == 201, response.text


def twilio_source(api: httpx.Client) -> dict[str, Any]:
    return source(
        api,
        kind="twilio",
        name="Twilio SMS",
        auth_token=TWILIO_TOKEN,
        public_base_url="https://crm.example.com",
    )


def post_twilio(
    api: httpx.Client,
    hook: dict[str, Any],
    params: dict[str, str],
    token: str = TWILIO_TOKEN,
    query: str = "",
) -> httpx.Response:
    return post_twilio_form(api, path_of(hook) + query, params, token)


SMS = {  # Twilio's incoming message webhook, as documented
    "ToCountry": "FR",
    "SmsMessageSid": "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0",
    "NumMedia": "0",
    "SmsSid": "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0",
    "SmsStatus": "received",
    "Body": "Can we move the meeting to Monday?",
    "To": "+33757000000",
    "NumSegments": "1",
    "MessageSid": "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0",
    "AccountSid": "AC25e16e9a716a4a1786a7c83f58e30482",
    "From": "+33612345678",
    "FromCountry": "FR",
    "ApiVersion": "2010-04-01",
}
