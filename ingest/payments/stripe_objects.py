"""Stripe's objects as its webhook events carry them (https://docs.stripe.com/api): the
fields `ingest.payments.stripe` reads, each checked, the many others ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

MAX_AMOUNT = 2**63 - 1  # what a BigInteger holds


class Loose(BaseModel):
    """Stripe's objects carry many more fields than we read; a new one never breaks us."""

    model_config = ConfigDict(extra="ignore")


class StripeEventIn(Loose):
    """The event envelope (https://docs.stripe.com/api/events/object)."""

    id: str = Field(pattern=r"^evt_[A-Za-z0-9_]{1,200}$")
    object: Literal["event"]
    type: str = Field(min_length=1, max_length=200)
    created: StrictInt = Field(ge=0, le=7_258_118_400, description="Unix seconds")
    livemode: StrictBool = False
    api_version: str | None = Field(None, max_length=50)
    data: dict[str, Any]


class Details(Loose):
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=300)


class PaymentError(Loose):
    message: str | None = Field(None, max_length=2000)
    code: str | None = Field(None, max_length=200)
    decline_code: str | None = Field(None, max_length=200)
    charge: str | None = Field(None, max_length=200)


class Shipping(Loose):
    name: str | None = Field(None, max_length=300)
    phone: str | None = Field(None, max_length=64)


CURRENCY = r"^[A-Za-z]{3}$"  # ISO 4217; Stripe writes it in lower case
Metadata = dict[str, str | int | float | bool | None]


class StripePaymentIntent(Loose):
    id: str = Field(pattern=r"^pi_[A-Za-z0-9_]{1,200}$")
    object: Literal["payment_intent"]
    amount: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    amount_received: StrictInt | None = Field(None, ge=0, le=MAX_AMOUNT)
    currency: str = Field(pattern=CURRENCY)
    metadata: Metadata = Field(default_factory=dict)
    receipt_email: str | None = Field(None, max_length=320)
    description: str | None = Field(None, max_length=1000)
    shipping: Shipping | None = None
    last_payment_error: PaymentError | None = None


class StripeCheckoutSession(Loose):
    id: str = Field(pattern=r"^cs_[A-Za-z0-9_]{1,200}$")
    object: Literal["checkout.session"]
    payment_status: Literal["paid", "unpaid", "no_payment_required"]
    amount_total: StrictInt | None = Field(None, ge=0, le=MAX_AMOUNT)
    currency: str | None = Field(None, pattern=CURRENCY)
    payment_intent: str | None = Field(None, max_length=200)
    invoice: str | None = Field(None, max_length=200)
    client_reference_id: str | None = Field(None, max_length=200)
    customer_details: Details | None = None
    customer_email: str | None = Field(None, max_length=320)
    metadata: Metadata = Field(default_factory=dict)


class Refund(Loose):
    reason: str | None = Field(None, max_length=200)
    amount: StrictInt | None = None


class Refunds(Loose):
    data: list[Refund] = Field(default_factory=list)


class StripeCharge(Loose):
    id: str = Field(pattern=r"^(ch|py)_[A-Za-z0-9_]{1,200}$")
    object: Literal["charge"]
    amount: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    amount_refunded: StrictInt = Field(ge=0, le=MAX_AMOUNT)
    currency: str = Field(pattern=CURRENCY)
    refunded: StrictBool
    payment_intent: str | None = Field(None, max_length=200)
    billing_details: Details | None = None
    receipt_email: str | None = Field(None, max_length=320)
    metadata: Metadata = Field(default_factory=dict)
    refunds: Refunds | None = None


class StripeInvoice(Loose):
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
