"""The `stripe` provider: Stripe's webhook events (`Stripe-Signature`, keyed with the
endpoint's signing secret). Hook: an event of a type we use is stored, any other answered
200 with `ignored`; worker: the stored event -> `crm_core.payments.PaymentEvent`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from crm_core.errors import InvalidInput
from crm_core.models import dedupe_key
from crm_core.payments import PaymentEvent
from crm_core.phones import normalize_phone
from ingest.errors import RejectedInput
from ingest.payments.processing import PAYMENT
from ingest.payments.stripe_objects import (
    Details,
    Metadata,
    PaymentError,
    StripeCharge,
    StripeCheckoutSession,
    StripeEventIn,
    StripeInvoice,
    StripePaymentIntent,
)
from ingest.provider import (
    ActiveSource,
    HookAccepted,
    HookAnswer,
    HookRequest,
    OneInput,
    Split,
    StoredSource,
)
from ingest.signatures import check_stripe
from ingest.wire import Region, StrictIn, clean, load_json, valid

# The Stripe events that are payments of an order; others are acknowledged and not kept.
STRIPE_EVENTS = (
    "checkout.session.completed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "invoice.paid",
)
CARD_REF = re.compile(r"^(?:card[-_])?([0-9]{1,10})$", re.IGNORECASE)


class StripeSourceIn(StrictIn):
    """A Stripe webhook endpoint (payments of orders), signed with its signing secret."""

    kind: Literal["stripe"]
    name: str = Field(min_length=1, max_length=200)
    signing_secret: str = Field(
        pattern=r"^whsec_[A-Za-z0-9_+/=-]{1,200}$",
        description="the endpoint's signing secret, whsec_... (never shown again)",
    )
    default_region: Region | None = None


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
        payer = Details(
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
        details = session.customer_details or Details()
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
        details = charge.billing_details or Details()
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
        payer=Details(
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
    payer: Details,
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


def _failure(error: PaymentError | None) -> str | None:
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


class Stripe:
    kind = "stripe"
    channel = "payment"
    settings_model = StripeSourceIn
    secret_settings: tuple[str, ...] = ("signing_secret",)
    generated_secret: str | None = None
    media = (PAYMENT,)
    hook_doc = (
        "The event as Stripe sends it, with `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 "
        'of t + "." + raw body, keyed with the endpoint\'s signing secret>` (several v1 '
        "accepted while a secret is rolled; 5 minutes of skew); used: "
        + ", ".join(STRIPE_EVENTS)
        + "; other types are answered 200 with `ignored`. An event id already received is "
        "answered 200 again and changes nothing."
    )
    body_docs: Mapping[str, Mapping[str, Any]] = {}

    def verify(self, source: ActiveSource, request: HookRequest, now: datetime) -> None:
        check_stripe(
            source.secrets["signing_secret"],
            request.headers.get("stripe-signature"),
            request.body,
            now,
        )

    def split(
        self, source: ActiveSource, request: HookRequest, now: datetime, region: str
    ) -> Split:
        """The event, stored whole under its id (Stripe retries it for days); a type we do
        not use, or an event with nothing to pay, is ignored."""
        envelope = stripe_envelope(request.body)
        if stripe_payment(source.id, request.body, region) is None:
            why = (
                f"event type {envelope.type} is not used"
                if envelope.type not in STRIPE_EVENTS
                else f"event {envelope.id} is no payment (nothing to pay)"
            )
            return Split(ignored=[why])
        return Split([OneInput(dedupe_key("stripe", source.id, envelope.id), request.body)])

    def parse(self, source: StoredSource, raw: bytes, received_at: datetime) -> PaymentEvent:
        event = stripe_payment(source.id, raw, source.region)
        if event is None:
            raise RejectedInput("a Stripe event that is no payment of an order")
        return event

    def answer(self, accepted: HookAccepted) -> HookAnswer:
        return HookAnswer(200)  # Stripe wants a 2xx; 200 whether stored or ignored


PROVIDER = Stripe()
