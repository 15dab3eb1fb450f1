"""Provider payloads -> `crm_core.payments.PaymentEvent`: Stripe's webhook events and our
own signed payment JSON. Pure functions of the stored bytes, used by the hook (to answer
422 at once) and again by the worker (which only has the stored bytes).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StrictBool, StrictInt

from crm_core import schemas
from crm_core.errors import InvalidInput
from crm_core.payments import PaymentEvent
from crm_core.phones import normalize_phone
from ingest.errors import RejectedInput
from ingest.payloads import clean, load_json, number_field, valid

# The Stripe events that are payments of an order; others are acknowledged and not kept.
STRIPE_EVENTS = (
    "checkout.session.completed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "invoice.paid",
)
MAX_AMOUNT = 2**63 - 1  # what a BigInteger holds
CARD_REF = re.compile(r"^(?:card[-_])?([0-9]{1,10})$", re.IGNORECASE)


# --- our own payment JSON ----------------------------------------------------------------


class PayerIn(BaseModel):
    email: schemas.EmailAddress | None = None
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
    occurred_at: schemas.Moment = Field(description="ISO 8601 with its UTC offset")
    reason: str | None = Field(None, max_length=1000, description="why it failed or was refunded")
    url: HttpUrl | None = Field(None, description="the payment in the provider's dashboard")


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


# --- Stripe ------------------------------------------------------------------------------


class _Loose(BaseModel):
    """Stripe's objects carry many more fields than we read; a new one never breaks us."""

    model_config = ConfigDict(extra="ignore")


class StripeEventIn(_Loose):
    """The event envelope (https://docs.stripe.com/api/events/object)."""

    id: str = Field(pattern=r"^evt_[A-Za-z0-9_]{1,200}$")
    object: Literal["event"]
    type: str = Field(min_length=1, max_length=200)
    created: StrictInt = Field(ge=0, le=7_258_118_400, description="Unix seconds")
    livemode: StrictBool = False
    api_version: str | None = Field(None, max_length=50)
    data: dict[str, Any]


class _Details(_Loose):
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=300)


class _PaymentError(_Loose):
    message: str | None = Field(None, max_length=2000)
    code: str | None = Field(None, max_length=200)
    decline_code: str | None = Field(None, max_length=200)
    charge: str | None = Field(None, max_length=200)


class _Shipping(_Loose):
    name: str | None = Field(None, max_length=300)
    phone: str | None = Field(None, max_length=64)


CURRENCY = r"^[A-Za-z]{3}$"  # ISO 4217; Stripe writes it in lower case
Metadata = dict[str, str | int | float | bool | None]


class StripePaymentIntent(_Loose):
    id: str = Field(pattern=r"^pi_[A-Za-z0-9_]{1,200}$")
    object: Literal["payment_intent"]
    amount: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    amount_received: StrictInt | None = Field(None, ge=0, le=MAX_AMOUNT)
    currency: str = Field(pattern=CURRENCY)
    metadata: Metadata = Field(default_factory=dict)
    receipt_email: str | None = Field(None, max_length=320)
    description: str | None = Field(None, max_length=1000)
    shipping: _Shipping | None = None
    last_payment_error: _PaymentError | None = None


class StripeCheckoutSession(_Loose):
    id: str = Field(pattern=r"^cs_[A-Za-z0-9_]{1,200}$")
    object: Literal["checkout.session"]
    payment_status: Literal["paid", "unpaid", "no_payment_required"]
    amount_total: StrictInt | None = Field(None, ge=0, le=MAX_AMOUNT)
    currency: str | None = Field(None, pattern=CURRENCY)
    payment_intent: str | None = Field(None, max_length=200)
    invoice: str | None = Field(None, max_length=200)
    client_reference_id: str | None = Field(None, max_length=200)
    customer_details: _Details | None = None
    customer_email: str | None = Field(None, max_length=320)
    metadata: Metadata = Field(default_factory=dict)


class _Refund(_Loose):
    reason: str | None = Field(None, max_length=200)
    amount: StrictInt | None = None


class _Refunds(_Loose):
    data: list[_Refund] = Field(default_factory=list)


class StripeCharge(_Loose):
    id: str = Field(pattern=r"^(ch|py)_[A-Za-z0-9_]{1,200}$")
    object: Literal["charge"]
    amount: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    amount_refunded: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    currency: str = Field(pattern=CURRENCY)
    refunded: StrictBool
    payment_intent: str | None = Field(None, max_length=200)
    billing_details: _Details | None = None
    receipt_email: str | None = Field(None, max_length=320)
    metadata: Metadata = Field(default_factory=dict)
    refunds: _Refunds | None = None


class StripeInvoice(_Loose):
    id: str = Field(pattern=r"^in_[A-Za-z0-9_]{1,200}$")
    object: Literal["invoice"]
    amount_paid: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    currency: str = Field(pattern=CURRENCY)
    payment_intent: str | None = Field(None, max_length=200)
    customer_email: str | None = Field(None, max_length=320)
    customer_phone: str | None = Field(None, max_length=64)
    customer_name: str | None = Field(None, max_length=300)
    number: str | None = Field(None, max_length=200)
    hosted_invoice_url: str | None = Field(None, max_length=2000)
    metadata: Metadata = Field(default_factory=dict)


def stripe_envelope(raw: bytes) -> StripeEventIn:
    """The event's envelope (id, type...); RejectedInput naming the bad field."""
    return valid(StripeEventIn, load_json(raw))


def stripe_payment(source_id: int, raw: bytes, region: str) -> PaymentEvent | None:
    """A Stripe event (as stored) -> PaymentEvent; None for an event that is no payment of
    an order (a type we do not use, a Checkout Session that needed no payment)."""
    event = stripe_envelope(raw)
    if event.type not in STRIPE_EVENTS:
        return None
    found = event.data.get("object")
    at = datetime.fromtimestamp(event.created, UTC)
    common: dict[str, Any] = {
        "source_id": source_id,
        "provider": "stripe",
        "occurred_at": at,
        "details": {
            "event_id": event.id,
            "event_type": event.type,
            "livemode": event.livemode,
        },
    }
    if event.type.startswith("payment_intent."):
        intent = valid(StripePaymentIntent, found, "data.object")
        failed = event.type == "payment_intent.payment_failed"
        error = intent.last_payment_error
        payer = _Details(
            email=intent.receipt_email,
            phone=intent.shipping.phone if intent.shipping else None,
            name=intent.shipping.name if intent.shipping else None,
        )
        return _event(
            common,
            payment_id=intent.id,
            status="failed" if failed else "succeeded",
            event_key=f"failed:{event.id}" if failed else "succeeded",
            # What was received (a manual or partial capture takes less than authorised).
            amount=intent.amount if failed else (intent.amount_received or intent.amount),
            currency=intent.currency,
            reason=_failure(error) if failed else None,
            payer=payer,
            metadata=intent.metadata,
            region=region,
            livemode=event.livemode,
        )
    if event.type == "checkout.session.completed":
        session = valid(StripeCheckoutSession, found, "data.object")
        if session.payment_status == "no_payment_required":
            return None
        paid = session.payment_status == "paid"
        details = session.customer_details or _Details()
        if not details.email:
            details = details.model_copy(update={"email": session.customer_email})
        metadata = dict(session.metadata)
        # client_reference_id comes from the page's URL, which the payer can edit (Payment
        # Links, pricing tables): kept on the entry, never used to choose a card. The
        # session's metadata is set by the merchant's server, with its secret key.
        if session.client_reference_id:
            common["details"]["client_reference_id"] = session.client_reference_id[:200]
        common["details"]["checkout_session"] = session.id
        return _event(
            common,
            payment_id=session.payment_intent or session.invoice or session.id,
            status="succeeded" if paid else "pending",
            event_key="succeeded" if paid else "pending",
            amount=session.amount_total,
            currency=session.currency,
            reason=None,
            payer=details,
            metadata=metadata,
            region=region,
            livemode=event.livemode,
        )
    if event.type == "charge.refunded":
        charge = valid(StripeCharge, found, "data.object")
        if charge.amount_refunded > charge.amount:
            raise RejectedInput("data.object.amount_refunded: more than amount")
        refunds = charge.refunds.data if charge.refunds else []
        reasons = sorted({r.reason for r in refunds if r.reason})
        details = charge.billing_details or _Details()
        if not details.email:
            details = details.model_copy(update={"email": charge.receipt_email})
        common["details"]["charge"] = charge.id
        return _event(
            common,
            payment_id=charge.payment_intent or charge.id,
            status="refunded" if charge.refunded else "partially_refunded",
            event_key=f"refunded:{charge.amount_refunded}",
            amount=charge.amount,
            currency=charge.currency,
            amount_refunded=charge.amount_refunded,
            reason=", ".join(reasons) or None,
            payer=details,
            metadata=charge.metadata,
            region=region,
            livemode=event.livemode,
        )
    invoice = valid(StripeInvoice, found, "data.object")
    common["details"]["invoice"] = invoice.id
    common["details"]["invoice_number"] = invoice.number
    return _event(
        common,
        payment_id=invoice.payment_intent or invoice.id,
        status="succeeded",
        event_key="succeeded",
        amount=invoice.amount_paid,
        currency=invoice.currency,
        reason=None,
        payer=_Details(
            email=invoice.customer_email,
            phone=invoice.customer_phone,
            name=invoice.customer_name,
        ),
        metadata=invoice.metadata,
        region=region,
        livemode=event.livemode,
    )


def _event(
    common: dict[str, Any],
    *,
    payment_id: str,
    status: str,
    event_key: str,
    amount: int | None,
    currency: str | None,
    reason: str | None,
    payer: _Details,
    metadata: Metadata,
    region: str,
    livemode: bool,
    amount_refunded: int = 0,
) -> PaymentEvent:
    card_ref, order_ref = _references(metadata)
    return PaymentEvent(
        payment_id=payment_id,
        event_key=event_key,
        status=status,
        amount=amount,
        currency=currency.upper() if currency else None,
        amount_refunded=amount_refunded,
        reason=clean(reason)[:1000] if reason else None,
        email=_email(payer.email),
        phone=_phone(payer.phone, region),
        payer_name=clean(payer.name or "")[:300],
        card_ref=card_ref,
        order_ref=order_ref,
        url=_dashboard(payment_id, livemode),
        **common,
    )


def _references(metadata: Metadata) -> tuple[int | None, str | None]:
    """`metadata.card_id` ("42" or "card-42") and `metadata.order_ref`; a card id that is no
    number is named as the error it is."""
    card_ref = None
    raw = metadata.get("card_id")
    if raw not in (None, ""):
        match = CARD_REF.match(str(raw).strip())
        if match is None or not 1 <= int(match.group(1)) <= 2**31 - 1:
            raise RejectedInput(
                'data.object.metadata.card_id: must be a card id ("42" or "card-42")'
            )
        card_ref = int(match.group(1))
    order = metadata.get("order_ref")
    order_ref = clean(str(order)).strip()[:200] if order not in (None, "") else None
    return card_ref, order_ref or None


def _failure(error: _PaymentError | None) -> str | None:
    """Stripe's message and its decline code: "Your card was declined. (insufficient_funds)"."""
    if error is None:
        return None
    code = error.decline_code or error.code
    words = [error.message or "", f"({code})" if code else ""]
    return " ".join(w for w in words if w) or None


def _email(address: str | None) -> str | None:
    """The payer's e-mail when it is one (a provider may hold anything a customer typed)."""
    if not address:
        return None
    address = clean(address).strip().lower()
    local, at, domain = address.partition("@")
    if not (at and local and "." in domain) or any(c.isspace() for c in address):
        return None
    return address


def _phone(number: str | None, region: str) -> str | None:
    """The payer's phone in E.164 when it is one; a number Stripe holds but that is no
    number does not lose the payment."""
    if not number:
        return None
    try:
        return normalize_phone(number, region)
    except InvalidInput:
        return None


def _dashboard(payment_id: str, livemode: bool) -> str | None:
    base = "https://dashboard.stripe.com/" + ("" if livemode else "test/")
    if payment_id.startswith(("pi_", "ch_", "py_")):
        return f"{base}payments/{payment_id}"
    if payment_id.startswith("in_"):
        return f"{base}invoices/{payment_id}"
    return None
