"""Payments of orders over real HTTP: Stripe events in their documented shape land on a card;
events out of order (a refund before its payment), partial captures and refunds, and the
card choice (metadata, order reference, the payer's contact, the unmatched list; never
Checkout's client_reference_id).

SPEC "Incoming activities" (order payment), "Which card?"; seeds 000, 001; issue 12.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.support.calllog import all_done, card_with_phone, stored_count
from tests.support.helpers import (
    create_card,
    create_user,
    history,
    inbound_items,
    wait_for,
)
from tests.support.payments import (
    OLD_SECRET,
    PAYER,
    SIGNING_SECRET,
    card,
    incoming,
    kanban,
    payment_intent,
    payments_of,
    post_stripe,
    stripe_event,
    stripe_source,
)


def charge_refunded(
    pi_id: str,
    amount: int,
    refunded: int,
    email: str = PAYER,
    reason: str = "requested_by_customer",
) -> dict[str, Any]:
    return {
        "id": f"ch_{pi_id[3:]}",
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "billing_details": {"address": None, "email": email, "name": "John Doe", "phone": None},
        "captured": True,
        "created": 1_763_800_000,
        "currency": "eur",
        "metadata": {},
        "paid": True,
        "payment_intent": pi_id,
        "receipt_email": email,
        "refunded": refunded == amount,
        "refunds": {
            "object": "list",
            "data": [{"id": "re_1", "object": "refund", "amount": refunded, "reason": reason}],
            "has_more": False,
        },
        "status": "succeeded",
    }


def checkout_session(pi_id: str, amount: int, **fields: Any) -> dict[str, Any]:
    session = {
        "id": f"cs_test_{pi_id[3:]}",
        "object": "checkout.session",
        "amount_subtotal": amount,
        "amount_total": amount,
        "client_reference_id": None,
        "currency": "eur",
        "customer_details": {"email": PAYER, "name": "John Doe", "phone": None},
        "customer_email": None,
        "invoice": None,
        "metadata": {},
        "mode": "payment",
        "payment_intent": pi_id,
        "payment_status": "paid",
        "status": "complete",
    }
    session.update(fields)
    return session


# --- Stripe: the happy path, the card, the counters ------------------------------------------


def test_a_stripe_payment_lands_on_the_payers_card(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    target = create_card(api, anna["id"], title="Order SO-1001")
    quiet = card_with_phone(api, anna["id"], "+33 1 40 00 00 00", title="Quiet deal")
    assert kanban(api) == [quiet["id"], target["id"]]
    hook = stripe_source(api)
    assert hook["hook_url"].endswith(f"/hooks/payments/{hook['id']}")
    assert hook["secret"] is None and "signing_secret" not in hook["settings"]
    listed = api.get(f"/api/sources/{hook['id']}").json()
    assert SIGNING_SECRET not in json.dumps(listed)

    # Two v1 values while the secret is rolled: the first (old secret) fails, the second matches
    created = int(clock().timestamp())
    paid = stripe_event(
        "payment_intent.succeeded",
        payment_intent("pi_3PaidA", 3_000_000_000),  # 30,000,000.00 EUR: more than 32 bits
        "evt_1Paid",
        created,
    )
    response = post_stripe(api, hook, paid, clock, secrets=(OLD_SECRET, SIGNING_SECRET))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    wait_for(lambda: all_done(api, 1), what="the payment")

    [entry] = payments_of(api, target["id"])
    assert entry["amount"] == 3_000_000_000 and isinstance(entry["amount"], int)
    assert entry["currency"] == "EUR" and entry["status"] == "succeeded"
    assert entry["payment_status"] == "succeeded" and entry["current"] is True
    assert entry["url"] == "https://dashboard.stripe.com/test/payments/pi_3PaidA"
    assert entry["event_id"] == "evt_1Paid" and entry["payer"]["email"] == PAYER
    assert history(api, quiet["id"]) == []
    assert incoming(api, anna["id"]) == 1
    shown = card(api, target["id"])
    assert shown["unread"] is True
    assert shown["focus_reason"] == "payment received: 30000000.00 EUR"
    assert kanban(api) == [target["id"], quiet["id"]]
    [activity] = api.get("/api/activities", params={"type": "payment"}).json()["items"]
    assert activity["incoming"] is True and activity["is_open"] is True
    assert activity["subject"] == f"Payment of 30000000.00 EUR from {PAYER}"

    # Checkout's own event for the same PaymentIntent: the same payment, nothing new
    session = stripe_event(
        "checkout.session.completed",
        checkout_session("pi_3PaidA", 3_000_000_000),
        "evt_1Session",
        created + 1,
    )
    assert post_stripe(api, hook, session, clock).status_code == 200
    wait_for(lambda: all_done(api, 2), what="the checkout session")
    assert [i["status"] for i in inbound_items(api)] == ["processed", "processed"]
    assert len(payments_of(api, target["id"])) == 1
    assert incoming(api, anna["id"]) == 1

    # A failed payment of the quiet card's customer: history and focus with the reason; no
    # activity, no unread mark
    failed = stripe_event(
        "payment_intent.payment_failed",
        payment_intent(
            "pi_3FailB",
            4200,
            failed=True,
            receipt_email=None,
            shipping={"name": "Quiet Customer", "phone": "+33 1 40 00 00 00"},
        ),
        "evt_1Fail",
        created + 2,
    )
    assert post_stripe(api, hook, failed, clock).status_code == 200
    wait_for(lambda: all_done(api, 3), what="the failed payment")
    [failure] = payments_of(api, quiet["id"])
    assert failure["status"] == "failed" and failure["amount"] == 4200
    assert failure["reason"] == "Your card has insufficient funds. (insufficient_funds)"
    shown = card(api, quiet["id"])
    assert shown["focus_reason"] == (
        "payment failed: 42.00 EUR: Your card has insufficient funds. (insufficient_funds)"
    )
    assert shown["unread"] is False
    assert incoming(api, anna["id"]) == 1
    assert kanban(api) == [quiet["id"], target["id"]]


def test_a_partly_captured_payment_counts_what_was_received(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    target = create_card(api, anna["id"])
    hook = stripe_source(api)
    # Authorised 100.00, captured 60.00 (capture_method manual, amount_to_capture 6000)
    captured = payment_intent("pi_3Cap", 10_000, amount_received=6_000)
    event = stripe_event("payment_intent.succeeded", captured, "evt_Cap", int(clock().timestamp()))
    assert post_stripe(api, hook, event, clock).status_code == 200
    wait_for(lambda: all_done(api, 1), what="the payment")
    [entry] = payments_of(api, target["id"])
    assert entry["amount"] == 6_000 and entry["status"] == "succeeded"
    assert entry["amount_text"] == "60.00 EUR"  # what the card page shows


def test_a_refund_before_its_payment_ends_refunded(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    target = create_card(api, anna["id"])
    hook = stripe_source(api)
    now = int(clock().timestamp())
    paid = stripe_event("payment_intent.succeeded", payment_intent("pi_3O", 2500), "evt_O1", now)
    refund = stripe_event(
        "charge.refunded", charge_refunded("pi_3O", 2500, 2500), "evt_O2", now + 60
    )

    # Stripe delivers the refund first
    assert post_stripe(api, hook, refund, clock).status_code == 200
    wait_for(lambda: all_done(api, 1), what="the refund")
    shown = card(api, target["id"])
    assert shown["focus_reason"] == "payment refunded: 25.00 EUR: requested_by_customer"
    assert post_stripe(api, hook, paid, clock).status_code == 200
    wait_for(lambda: all_done(api, 2), what="the late payment")

    entries = {e["status"]: e for e in payments_of(api, target["id"])}
    assert set(entries) == {"succeeded", "refunded"}
    assert all(e["payment_status"] == "refunded" for e in entries.values())
    assert entries["refunded"]["current"] is True and entries["succeeded"]["current"] is False
    assert entries["refunded"]["amount_refunded"] == 2500
    # A payment already refunded asks nothing of anyone: no incoming activity, not unread
    assert incoming(api, anna["id"]) == 0
    assert api.get("/api/activities", params={"type": "payment"}).json()["items"] == []
    shown = card(api, target["id"])
    assert shown["unread"] is False
    assert shown["focus_reason"].startswith("payment refunded")
    # Replays of either, in any order, change nothing
    before = history(api, target["id"])
    for event in (paid, refund, paid):
        assert post_stripe(api, hook, event, clock).status_code == 200
    time.sleep(0.5)
    assert history(api, target["id"]) == before and stored_count(runtime) == 2


def test_in_order_a_payment_then_partial_refunds(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    target = create_card(api, anna["id"])
    hook = stripe_source(api)
    now = int(clock().timestamp())
    events = [
        stripe_event("payment_intent.succeeded", payment_intent("pi_3P", 10_000), "evt_P1", now),
        # two partial refunds, the second (all refunded now) delivered before the first
        stripe_event(
            "charge.refunded", charge_refunded("pi_3P", 10_000, 10_000), "evt_P3", now + 120
        ),
        stripe_event(
            "charge.refunded", charge_refunded("pi_3P", 10_000, 3_000), "evt_P2", now + 60
        ),
    ]
    post_stripe(api, hook, events[0], clock)
    wait_for(lambda: all_done(api, 1), what="the payment")
    assert incoming(api, anna["id"]) == 1  # paid: an incoming activity
    post_stripe(api, hook, events[1], clock)
    wait_for(lambda: all_done(api, 2), what="the full refund")
    post_stripe(api, hook, events[2], clock)
    wait_for(lambda: all_done(api, 3), what="the late partial refund")
    entries = payments_of(api, target["id"])
    assert sorted(e["status"] for e in entries) == [
        "partially_refunded",
        "refunded",
        "succeeded",
    ]
    assert {e["payment_status"] for e in entries} == {"refunded"}
    assert {e["payment_amount_refunded"] for e in entries} == {10_000}
    current = [e["status"] for e in entries if e["current"]]
    assert current == ["refunded"]
    assert card(api, target["id"])["focus_reason"] == (
        "payment refunded: 100.00 EUR: requested_by_customer"
    )
    assert incoming(api, anna["id"]) == 1  # the payment's activity stays for its responsible


# --- which card -------------------------------------------------------------------------------


def test_the_payment_names_its_card_else_the_payer_else_unmatched(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    payer_card = create_card(api, anna["id"], title="The payer's open deal")
    ordered = create_card(api, anna["id"], title="The order's deal")
    won = api.patch(f"/api/cards/{ordered['id']}", json={"outcome": "won"})
    assert won.status_code == 200
    hook = stripe_source(api)
    now = int(clock().timestamp())

    # metadata.card_id wins over the payer's contact, even on a won deal (an order is paid
    # after the deal is won)
    named = stripe_event(
        "payment_intent.succeeded",
        payment_intent("pi_3N", 700, metadata={"card_id": str(ordered["id"])}),
        "evt_N",
        now,
    )
    post_stripe(api, hook, named, clock)
    wait_for(lambda: all_done(api, 1), what="the named payment")
    assert [e["payment_id"] for e in payments_of(api, ordered["id"])] == ["pi_3N"]
    assert payments_of(api, payer_card["id"]) == []

    # Checkout's client_reference_id comes from the page's URL, which the payer can edit:
    # it never chooses the card (the payer's contact does here)
    checkout = stripe_event(
        "checkout.session.completed",
        checkout_session("pi_3C", 800, client_reference_id=f"card-{ordered['id']}"),
        "evt_C",
        now,
    )
    post_stripe(api, hook, checkout, clock)
    wait_for(lambda: all_done(api, 2), what="the checkout")
    assert [e["payment_id"] for e in payments_of(api, ordered["id"])] == ["pi_3N"]
    assert [e["payment_id"] for e in payments_of(api, payer_card["id"])] == ["pi_3C"]

    # A card id that names no card is not followed: the payer's card gets it, with the reason
    ghost = stripe_event(
        "payment_intent.succeeded",
        payment_intent("pi_3G", 900, metadata={"card_id": "987654", "order_ref": "SO-77"}),
        "evt_G",
        now,
    )
    post_stripe(api, hook, ghost, clock)
    wait_for(lambda: all_done(api, 3), what="the payment naming no card")
    entry = next(e for e in payments_of(api, payer_card["id"]) if e["payment_id"] == "pi_3G")
    assert entry["card_ref_error"] == "card 987654 named by the payment does not exist"
    # ...and another payment of the same order follows it there, whoever pays
    second = stripe_event(
        "payment_intent.succeeded",
        payment_intent("pi_3G2", 100, receipt_email="", metadata={"order_ref": "SO-77"}),
        "evt_G2",
        now,
    )
    post_stripe(api, hook, second, clock)
    wait_for(lambda: all_done(api, 4), what="the order's second payment")
    assert {e["payment_id"] for e in payments_of(api, payer_card["id"])} == {
        "pi_3C",
        "pi_3G",
        "pi_3G2",
    }

    # A stranger's payment with no reference: the unmatched list, until attached
    stranger = stripe_event(
        "payment_intent.succeeded",
        payment_intent("pi_3U", 1200, receipt_email="stranger@elsewhere.org"),
        "evt_U",
        now,
    )
    post_stripe(api, hook, stranger, clock)
    wait_for(lambda: all_done(api, 5), what="the stranger's payment")
    [waiting] = api.get("/api/unmatched").json()["items"]
    assert "no open card for stranger@elsewhere.org" in waiting["reason"]
    before = incoming(api, anna["id"])
    attached = api.post(
        f"/api/unmatched/{waiting['id']}/attach", json={"card_id": payer_card["id"]}
    )
    assert attached.status_code == 200, attached.text
    assert attached.json()["status"] == "processed"
    assert incoming(api, anna["id"]) == before + 1
    # its refund, later, follows the payment to that card (no e-mail on it this time)
    refund = stripe_event(
        "charge.refunded", charge_refunded("pi_3U", 1200, 1200, email=""), "evt_U2", now + 5
    )
    post_stripe(api, hook, refund, clock)
    wait_for(lambda: all_done(api, 6), what="the refund of the attached payment")
    statuses = {e["payment_id"] + ":" + e["status"] for e in payments_of(api, payer_card["id"])}
    assert "pi_3U:refunded" in statuses
    assert api.get("/api/unmatched").json()["items"] == []
