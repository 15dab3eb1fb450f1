"""Payments of orders over real HTTP: Stripe events in their documented shape, signed by
Stripe's SDK (two v1 values while a secret is rolled, stale timestamps), replays, events
out of order (a refund before its payment), the card choice (metadata, order reference, the
payer's contact, the unmatched list; never Checkout's client_reference_id), and our own
signed payment JSON.

SPEC "Incoming activities" (order payment), "Which card?"; seeds 000, 001; issue 12.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from ingest.runtime import Runtime
from ingest.signatures import sign_timestamped
from tests.conftest import FakeClock
from tests.helpers import counters, create_card, create_user, history, inbound_items, wait_for
from tests.provider_sdks import stripe_header
from tests.test_calllog import all_done, card_with_phone, stored_count
from tests.test_smtp import database_write_locked

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


def kanban(api: httpx.Client) -> list[int]:
    response = api.get("/api/kanban", params={"entity_type": "deal", "stage": "new"})
    return [c["id"] for c in response.json()["cards"]]


def card(api: httpx.Client, card_id: int) -> dict[str, Any]:
    return dict(api.get(f"/api/cards/{card_id}").json())


def payments_of(api: httpx.Client, card_id: int) -> list[dict[str, Any]]:
    return [e for e in history(api, card_id) if e["type"] == "payment"]


def incoming(api: httpx.Client, user_id: int) -> int:
    return int(counters(api, user_id)["incoming"])


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


def test_stripe_signatures_and_replays(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    target = create_card(api, anna["id"])
    hook = stripe_source(api)
    now = int(clock().timestamp())
    event = stripe_event("payment_intent.succeeded", payment_intent("pi_3R", 1999), "evt_R", now)
    raw = json.dumps(event).encode()

    refused = {
        "wrong secret": post_stripe(api, hook, event, clock, secrets=(OLD_SECRET,)),
        "changed body": post_stripe(api, hook, event, clock, body=raw.replace(b"1999", b"1")),
        "301 s old": post_stripe(api, hook, event, clock, timestamp=now - 301),
        "301 s ahead": post_stripe(api, hook, event, clock, timestamp=now + 301),
        "no header": post_stripe(api, hook, event, clock, header=""),
        "v0 only": post_stripe(
            api,
            hook,
            event,
            clock,
            header=stripe_header(raw, now, SIGNING_SECRET).replace("v1=", "v0="),
        ),
        "no timestamp": post_stripe(
            api, hook, event, clock, header=stripe_header(raw, now, SIGNING_SECRET).split(",", 1)[1]
        ),
        "timestamp not signed": post_stripe(
            api,
            hook,
            event,
            clock,
            header=stripe_header(raw, now, SIGNING_SECRET).replace(f"t={now}", f"t={now - 1}"),
        ),
    }
    for what, response in refused.items():
        assert response.status_code == 401, (what, response.text)
    assert "300 s" in refused["301 s old"].json()["detail"]
    assert stored_count(runtime) == 0

    # Just within the tolerance: accepted; Stripe's retry (same event id): 200, same item
    first = post_stripe(api, hook, event, clock, timestamp=now - 299)
    assert first.status_code == 200, first.text
    wait_for(lambda: all_done(api, 1), what="the payment")
    before = (history(api, target["id"]), counters(api, anna["id"]), kanban(api))
    for _ in range(2):
        again = post_stripe(api, hook, event, clock)
        assert again.status_code == 200 and again.json()["ids"] == first.json()["ids"]
    time.sleep(0.5)
    assert (history(api, target["id"]), counters(api, anna["id"]), kanban(api)) == before
    assert stored_count(runtime) == 1

    # An event type we do not use: 200 (Stripe wants a 2xx), said, not stored
    customer = stripe_event(
        "customer.created", {"id": "cus_1", "object": "customer"}, "evt_Cus", now
    )
    unused = post_stripe(api, hook, customer, clock)
    assert unused.status_code == 200
    assert unused.json()["ignored"] == "event type customer.created is not used"
    assert stored_count(runtime) == 1

    # A revoked source, or one that never existed: 404, nothing stored
    assert api.delete(f"/api/sources/{hook['id']}").status_code == 204
    other = stripe_event("payment_intent.succeeded", payment_intent("pi_3S", 5), "evt_S", now)
    assert post_stripe(api, hook, other, clock).status_code == 404
    ghost = {**hook, "hook_url": hook["hook_url"].rsplit("/", 1)[0] + "/999"}
    assert post_stripe(api, ghost, other, clock).status_code == 404
    assert stored_count(runtime) == 1


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


# --- bad input, store failure -----------------------------------------------------------------


def test_bad_stripe_input_is_named_and_nothing_is_stored(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    hook = stripe_source(api)
    now = int(clock().timestamp())
    stamp_header = stripe_header(b"{not json", now, SIGNING_SECRET)
    not_json = api.post(
        hook["hook_url"], content=b"{not json", headers={"Stripe-Signature": stamp_header}
    )
    assert not_json.status_code == 422 and not_json.json()["detail"].startswith("body: not JSON")

    floating = payment_intent("pi_3F", 1999)
    floating["amount"] = 19.99  # Stripe never sends this: amounts are integers
    float_amount = stripe_event("payment_intent.succeeded", floating, "evt_F", now)
    response = post_stripe(api, hook, float_amount, clock)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("data.object.amount:")
    no_currency = payment_intent("pi_3F", 1999)
    del no_currency["currency"]
    response = post_stripe(
        api, hook, stripe_event("payment_intent.succeeded", no_currency, "evt_F2", now), clock
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "data.object.currency: Field required"
    bad_card = stripe_event(
        "payment_intent.succeeded",
        payment_intent("pi_3F", 1999, metadata={"card_id": "the big one"}),
        "evt_F3",
        now,
    )
    response = post_stripe(api, hook, bad_card, clock)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("data.object.metadata.card_id:")
    no_id = stripe_event("payment_intent.succeeded", payment_intent("pi_3F", 1), "evt_F4", now)
    del no_id["id"]
    response = post_stripe(api, hook, no_id, clock)
    assert response.status_code == 422 and response.json()["detail"] == "id: Field required"
    assert stored_count(runtime) == 0

    # A Stripe source needs the endpoint's signing secret, not an API key
    wrong = api.post(
        "/api/sources", json={"kind": "stripe", "name": "x", "signing_secret": "sk_live_123"}
    )
    assert wrong.status_code == 422 and "signing_secret" in wrong.text


@pytest.mark.settings(db_lock_timeout_seconds=1.0)  # the write lock is held on purpose
def test_a_store_failure_answers_503_and_keeps_nothing(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    hook = stripe_source(api)
    now = int(clock().timestamp())
    event = stripe_event("payment_intent.succeeded", payment_intent("pi_3D", 1), "evt_D", now)
    with database_write_locked(runtime.engine):
        response = post_stripe(api, hook, event, clock)
    assert response.status_code == 503, response.text
    assert "try again" in response.json()["detail"]
    assert stored_count(runtime) == 0


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


def test_our_payment_json(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    target = card_with_phone(api, anna["id"])
    hook = payment_source(api)
    assert hook["secret"] and hook["hook_url"].endswith(f"/hooks/payments/{hook['id']}")
    now = int(clock().timestamp())
    payload = our_payment("p-1", amount=1500, currency="kwd", order_ref="SO-9")

    # Signed like the call-log hook: a wrong secret or a stale timestamp is refused
    assert post_payment(api, hook, payload, clock, secret="nope").status_code == 401
    assert post_payment(api, hook, payload, clock, timestamp=now - 301).status_code == 401
    # Amounts are integers in minor units: 15.00 is refused, naming the field
    floats = post_payment(api, hook, {**payload, "amount": 15.0}, clock)
    assert floats.status_code == 422 and floats.json()["detail"].startswith("amount:")
    currency = post_payment(api, hook, {**payload, "currency": "EURO"}, clock)
    assert currency.status_code == 422 and currency.json()["detail"].startswith("currency:")
    phone = post_payment(api, hook, {**payload, "payer": {"phone": "call me"}}, clock)
    assert phone.status_code == 422 and phone.json()["detail"].startswith("payer.phone:")
    assert stored_count(runtime) == 0

    accepted = post_payment(api, hook, payload, clock)
    assert accepted.status_code == 202, accepted.text
    wait_for(lambda: all_done(api, 1), what="the payment")
    again = post_payment(api, hook, payload, clock)
    assert again.json()["ids"] == accepted.json()["ids"]
    # 3 decimals for the Kuwaiti dinar, 0 for the yen: kept as sent, shown as they count
    [entry] = payments_of(api, target["id"])
    assert (entry["amount"], entry["currency"], entry["provider"]) == (1500, "KWD", "payment")
    assert card(api, target["id"])["focus_reason"] == "payment received: 1.500 KWD"
    assert incoming(api, anna["id"]) == 1
    yen = our_payment("p-2", amount=500, currency="JPY", status="failed", reason="declined")
    assert post_payment(api, hook, yen, clock).status_code == 202
    wait_for(lambda: all_done(api, 2), what="the failed payment")
    assert card(api, target["id"])["focus_reason"] == "payment failed: 500 JPY: declined"
    assert incoming(api, anna["id"]) == 1

    # A partial refund, then the payment's card by its own card_id
    refund = our_payment("p-1", amount=1500, currency="KWD", status="refunded", amount_refunded=500)
    assert post_payment(api, hook, refund, clock).status_code == 202
    wait_for(lambda: all_done(api, 3), what="the refund")
    statuses = {(e["payment_id"], e["status"]) for e in payments_of(api, target["id"])}
    assert ("p-1", "partially_refunded") in statuses
    other = card_with_phone(api, anna["id"], "+33 1 40 00 00 00", title="Other deal")
    named = our_payment("p-3", card_id=other["id"], payer={})
    assert post_payment(api, hook, named, clock).status_code == 202
    wait_for(lambda: all_done(api, 4), what="the payment naming its card")
    assert [e["payment_id"] for e in payments_of(api, other["id"])] == ["p-3"]


def test_the_hook_format_is_documented_in_openapi(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    hook = spec["paths"]["/hooks/payments/{source_id}"]["post"]
    body = hook["requestBody"]
    assert "Stripe-Signature" in body["description"] and "X-Signature" in body["description"]
    example = body["content"]["application/json"]["examples"]["a payment"]["value"]
    assert isinstance(example["amount"], int)
    assert "401" in hook["responses"]
