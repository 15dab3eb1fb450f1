"""Payments front door: check the source's signature (Stripe's or ours), store each event
raw, say which ids to enqueue. Framework-free: `ingest.http_app` maps its errors to
401/404/422/503 and answers 200 to Stripe (it wants a 2xx), 202 to our own JSON.

Nothing is stored before the signature passes; each event is committed before the 2xx; a
Stripe event already stored (same source, same event id: Stripe retries for days) or one of
our payment states already stored gets its existing id back. Stripe events we do not use
are answered 200 with `ignored` and not stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from crm_core import schemas
from crm_core.models import dedupe_key
from ingest import inbound, sources
from ingest.payments import payloads
from ingest.signatures import check_stripe, check_timestamped

CHANNEL = "payment"
KINDS = ("stripe", "payment")


@dataclass(frozen=True)
class Accepted:
    status_code: int  # Stripe: 200; our JSON: 202
    answer: schemas.HookAccepted


def accept(
    sessions: sessionmaker[Session],
    book: sources.SourceBook,
    request: sources.HookRequest,
    now: datetime,
    default_region: str,
) -> Accepted:
    """Verify and store; raises NotFound, BadSignature, RejectedInput or StoreUnavailable."""
    source = book.active(request.source_id, KINDS)
    region = source.settings.get("default_region") or default_region
    if source.kind == "stripe":
        check_stripe(
            source.secrets["signing_secret"],
            request.headers.get("stripe-signature"),
            request.body,
            now,
        )
        envelope = payloads.stripe_envelope(request.body)
        event = payloads.stripe_payment(source.id, request.body, region)
        if event is None:
            why = (
                f"event type {envelope.type} is not used"
                if envelope.type not in payloads.STRIPE_EVENTS
                else f"event {envelope.id} is no payment (nothing to pay)"
            )
            return Accepted(200, schemas.HookAccepted(accepted=0, ids=[], ignored=why))
        key, code = dedupe_key("stripe", source.id, envelope.id), 200
    else:
        check_timestamped(
            source.secrets["secret"],
            request.headers.get("x-timestamp"),
            request.headers.get("x-signature"),
            request.body,
            now,
        )
        event = payloads.our_payment(source.id, request.body, region)
        key, code = event.dedupe_key, 202
    ids = inbound.store(
        sessions,
        [
            inbound.NewInput(
                channel=CHANNEL,
                raw=request.body,
                dedupe_key=key,
                meta={"source_id": source.id, "kind": source.kind},
            )
        ],
    )
    return Accepted(code, schemas.HookAccepted(accepted=len(ids), ids=ids))


_PAYMENT_EXAMPLE = {
    "payment_id": "pay-20261122-0001",
    "status": "succeeded",
    "amount": 1999,
    "currency": "EUR",
    "payer": {"email": "john.doe@acme.com", "phone": "06 12 34 56 78", "name": "John Doe"},
    "card_id": None,
    "order_ref": "SO-1001",
    "occurred_at": "2026-11-22T10:15:00+01:00",
    "reason": None,
    "url": "https://pay.example.com/payments/pay-20261122-0001",
}

OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "For a `stripe` source: the event as Stripe sends it, with `Stripe-Signature: "
            't=<unix>,v1=<hex HMAC-SHA256 of t + "." + raw body, keyed with the endpoint\'s '
            "signing secret>` (several v1 accepted while a secret is rolled; 5 minutes of "
            "skew); used: " + ", ".join(payloads.STRIPE_EVENTS) + "; other types are answered "
            "200 with `ignored`. An event id already received is answered 200 again and "
            "changes nothing. For a `payment` source: one payment state (below), signed like "
            "the call-log hook: `X-Timestamp` and `X-Signature: sha256=<hex HMAC-SHA256 of "
            'timestamp + "." + raw body>`; amounts are integers in minor units.'
        ),
        "content": {
            "application/json": {
                "schema": payloads.PaymentIn.model_json_schema(),
                "examples": {"a payment": {"value": _PAYMENT_EXAMPLE}},
            }
        },
    }
}
