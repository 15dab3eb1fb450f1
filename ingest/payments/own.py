"""The `payment` provider: our own payment JSON (one state of one payment), for any payment
system, signed with a secret we generate. Hook: the one state of a request; worker: the
stored body -> `crm_core.payments.PaymentEvent`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl, StrictInt

from crm_core.payments import PaymentEvent
from ingest.errors import RejectedInput
from ingest.payments.processing import PAYMENT
from ingest.provider import ActiveSource, HookRequest, OneInput, Split, StoredSource
from ingest.signatures import TimestampSigned
from ingest.wire import (
    EmailAddress,
    Moment,
    Region,
    StrictIn,
    clean,
    load_json,
    number_field,
    valid,
)

MAX_AMOUNT = 2**63 - 1  # what a BigInteger holds


class PaymentSourceIn(StrictIn):
    """Any other payment system: our own payment JSON, signed like the call-log app's
    (secret shown once)."""

    kind: Literal["payment"]
    name: str = Field(min_length=1, max_length=200)
    default_region: Region | None = None


class PayerIn(BaseModel):
    email: EmailAddress | None = None
    phone: str | None = Field(None, min_length=1, max_length=64, description="any format")
    name: str = Field("", max_length=300)


class PaymentIn(BaseModel):
    """One state of one payment, as any payment system can send it (signed like the
    call-log hook)."""

    payment_id: str = Field(min_length=1, max_length=200, description="the provider's id")
    status: Literal["pending", "succeeded", "failed", "refunded"]
    amount: StrictInt = Field(
        ge=0, le=MAX_AMOUNT, description="integer minor units (cents), as the provider counts"
    )
    currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217, e.g. EUR")
    amount_refunded: StrictInt | None = Field(
        None, ge=0, le=MAX_AMOUNT, description="refunded so far (default: the whole amount)"
    )
    payer: PayerIn = Field(default_factory=PayerIn)
    card_id: int | None = Field(None, ge=1, le=2**31 - 1, description="the CRM card it pays")
    order_ref: str | None = Field(None, min_length=1, max_length=200)
    occurred_at: Moment = Field(description="ISO 8601 with its UTC offset")
    reason: str | None = Field(None, max_length=1000, description="why it failed or was refunded")
    url: HttpUrl | None = Field(None, description="the payment in the provider's dashboard")


_EXAMPLE = {
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


class OwnPayment(TimestampSigned):
    kind = "payment"
    channel = "payment"
    settings_model = PaymentSourceIn
    media = (PAYMENT,)
    hook_doc = (
        "One payment state (below), signed like the call-log hook: `X-Timestamp` and "
        '`X-Signature: sha256=<hex HMAC-SHA256 of timestamp + "." + raw body>`; amounts are '
        "integers in minor units."
    )
    body_docs: Mapping[str, Mapping[str, Any]] = {
        "application/json": {
            "schema": PaymentIn.model_json_schema(),
            "examples": {"a payment": {"value": _EXAMPLE}},
        }
    }

    def split(
        self, source: ActiveSource, request: HookRequest, now: datetime, region: str
    ) -> Split:
        event = our_payment(source.id, request.body, region)
        return Split([OneInput(event.dedupe_key, request.body)])

    def parse(self, source: StoredSource, raw: bytes, received_at: datetime) -> PaymentEvent:
        return our_payment(source.id, raw, source.region)


def our_payment(source_id: int, raw: bytes, region: str) -> PaymentEvent:
    """One payment state of our format (as stored) -> PaymentEvent; RejectedInput naming the
    bad field."""
    parsed = valid(PaymentIn, load_json(raw))
    refunded = 0
    status: str = parsed.status
    if status == "refunded":
        refunded = parsed.amount if parsed.amount_refunded is None else parsed.amount_refunded
        if refunded > parsed.amount:
            raise RejectedInput("amount_refunded: more than amount")
        if refunded < parsed.amount:
            status = "partially_refunded"
    if status == "failed":
        key = f"failed:{parsed.occurred_at.isoformat()}"
    elif status in ("refunded", "partially_refunded"):
        key = f"refunded:{refunded}"
    else:
        key = status
    payer = parsed.payer
    return PaymentEvent(
        source_id=source_id,
        provider="payment",
        payment_id=clean(parsed.payment_id),
        event_key=key,
        status=status,
        occurred_at=parsed.occurred_at,
        amount=parsed.amount,
        currency=parsed.currency.upper(),
        amount_refunded=refunded,
        reason=clean(parsed.reason) if parsed.reason else None,
        email=str(payer.email).lower() if payer.email else None,
        phone=number_field(payer.phone, region, "payer.phone") if payer.phone else None,
        payer_name=clean(payer.name),
        card_ref=parsed.card_id,
        order_ref=clean(parsed.order_ref) if parsed.order_ref else None,
        url=str(parsed.url) if parsed.url else None,
    )


PROVIDER = OwnPayment()
