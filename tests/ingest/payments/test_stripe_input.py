"""Stripe events that must not be taken as they come: signatures made by Stripe's SDK (two v1
values while a secret is rolled, stale timestamps), replays, bad input named, and a store
failure that keeps nothing.

SPEC "Incoming activities" (order payment); issue 12.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.support.calllog import all_done, stored_count
from tests.support.helpers import (
    counters,
    create_card,
    create_user,
    history,
    wait_for,
)
from tests.support.locks import database_write_locked
from tests.support.payments import (
    OLD_SECRET,
    SIGNING_SECRET,
    kanban,
    payment_intent,
    post_stripe,
    stripe_event,
    stripe_source,
)
from tests.support.provider_sdks import stripe_header


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
