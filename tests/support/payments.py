"""Payment hook helpers: a Stripe source and events in Stripe's documented shapes (payment
intents, refunds, checkout sessions) signed as Stripe signs them, our own payment format,
and the card's payments; shared by the payment, provider SDK and web page tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ingest.signatures import sign_timestamped
from tests.conftest import FakeClock
from tests.support.helpers import (
    counters,
    history,
)
from tests.support.provider_sdks import stripe_header

SIGNING_SECRET = "whsec_5c7f3ba0d0e94c2a9f1b7e6d4c3b2a19"
OLD_SECRET = "whsec_0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0l"
PAYER = "john.doe@acme.com"  # the contact of `create_card`'s card


# --- Stripe, as it sends events ------------------------------------------------------------


def stripe_source(api: httpx.Client, secret: str = SIGNING_SECRET) -> dict[str, Any]:
    response = api.post(
        "/api/sources", json={"kind": "stripe", "name": "Shop", "signing_secret": secret}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def post_stripe(
    api: httpx.Client,
    hook: dict[str, Any],
    event: dict[str, Any],
    clock: FakeClock,
    *,
    secrets: tuple[str, ...] = (SIGNING_SECRET,),
    timestamp: int | None = None,
    header: str | None = None,
    body: bytes | None = None,
) -> httpx.Response:
    raw = json.dumps(event).encode()
    stamp = timestamp if timestamp is not None else int(clock().timestamp())
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if header != "":
        headers["Stripe-Signature"] = header or stripe_header(raw, stamp, *secrets)
    return api.post(hook["hook_url"], content=body if body is not None else raw, headers=headers)


def stripe_event(
    event_type: str, obj: dict[str, Any], event_id: str, created: int
) -> dict[str, Any]:
    """The event object (https://docs.stripe.com/api/events/object)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def payment_intent(pi_id: str, amount: int, currency: str = "eur", **fields: Any) -> dict[str, Any]:
    failed = fields.pop("failed", False)
    intent: dict[str, Any] = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": fields.pop("amount_received", 0 if failed else amount),
        "capture_method": "automatic",
        "client_secret": f"{pi_id}_secret_x",
        "created": 1_763_800_000,
        "currency": currency,
        "customer": None,
        "description": "Order SO-1001",
        "last_payment_error": None,
        "latest_charge": f"ch_{pi_id[3:]}",
        "livemode": False,
        "metadata": fields.pop("metadata", {}),
        "payment_method_types": ["card"],
        "receipt_email": fields.pop("receipt_email", PAYER),
        "shipping": None,
        "status": "requires_payment_method" if failed else "succeeded",
    }
    if failed:
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "charge": f"ch_{pi_id[3:]}",
        }
    intent.update(fields)
    return intent


def kanban(api: httpx.Client) -> list[int]:
    response = api.get("/api/kanban", params={"entity_type": "deal", "stage": "new"})
    return [c["id"] for c in response.json()["cards"]]


def card(api: httpx.Client, card_id: int) -> dict[str, Any]:
    return dict(api.get(f"/api/cards/{card_id}").json())


def payments_of(api: httpx.Client, card_id: int) -> list[dict[str, Any]]:
    return [e for e in history(api, card_id) if e["type"] == "payment"]


def incoming(api: httpx.Client, user_id: int) -> int:
    return int(counters(api, user_id)["incoming"])


# --- our own payment JSON ---------------------------------------------------------------------


def payment_source(api: httpx.Client) -> dict[str, Any]:
    response = api.post("/api/sources", json={"kind": "payment", "name": "Cash register"})
    assert response.status_code == 201, response.text
    return dict(response.json())


def post_payment(
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
        hook["hook_url"],
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Timestamp": stamp,
            "X-Signature": sign_timestamped(secret or hook["secret"], stamp, raw),
        },
    )


def our_payment(payment_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "status": fields.pop("status", "succeeded"),
        "amount": fields.pop("amount", 1999),
        "currency": fields.pop("currency", "EUR"),
        "payer": fields.pop("payer", {"phone": "06 12 34 56 78", "name": "John Doe"}),
        "occurred_at": fields.pop("occurred_at", "2026-11-22T10:15:00+01:00"),
        **fields,
    }
