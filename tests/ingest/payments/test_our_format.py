"""Our own signed payment JSON over real HTTP, and the hook formats in the OpenAPI document.

SPEC "Incoming activities" (order payment); issue 12.
"""

from __future__ import annotations

import httpx

from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.support.calllog import all_done, card_with_phone, stored_count
from tests.support.helpers import (
    create_user,
    wait_for,
)
from tests.support.payments import (
    card,
    incoming,
    our_payment,
    payment_source,
    payments_of,
    post_payment,
)


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
