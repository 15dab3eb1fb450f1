"""The hooks against the providers' official SDKs (issue 19): Twilio's signatures are taken
exactly when `twilio.request_validator.RequestValidator` takes them (the URL with and
without its port), a `<Dial>` leg is the outgoing leg of its parent call, offset-less
timestamps are UTC, an unsigned voice callback is 401 before anything is parsed, and
`employees` takes integer ids; Stripe's events are signed by `stripe.WebhookSignature` and
accepted by the SDK and by us alike. Also: a worker given an id its database does not hold
says so and counts it.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from ingest.runtime import Runtime
from ingest.signatures import BadSignature, check_twilio, twilio_signature
from tests.conftest import FakeClock
from tests.support.calllog import TWILIO_NO_ANSWER, all_done, card_with_phone, source, stored_count
from tests.support.helpers import create_user, history, read_metrics, wait_for
from tests.support.payments import (
    SIGNING_SECRET,
    payment_intent,
    payments_of,
    stripe_event,
    stripe_source,
)
from tests.support.provider_sdks import stripe_accepts, stripe_header
from tests.support.provider_sdks import twilio_accepts as sdk_accepts
from tests.support.provider_sdks import twilio_signature as sdk_signature

TOKEN = "twilio-auth-token"
OUR_NUMBER = "+14155550100"
CUSTOMER = "+33612345678"
ANNA_MOBILE = "+33698765432"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def ours_accept(url: str, params: dict[str, str] | list[tuple[str, str]], signature: str) -> bool:
    pairs = list(params.items()) if isinstance(params, dict) else params
    try:
        check_twilio(TOKEN, url, pairs, signature)
    except BadSignature:
        return False
    return True


# --- Twilio's signature, as its SDK's validator takes it --------------------------------

CONFIGURED = [  # the URL the request reached, as we rebuild it from public_base_url
    "https://crm.example.com/hooks/calllog/7",
    "https://crm.example.com:443/hooks/calllog/7",
    "https://crm.example.com:8443/hooks/calllog/7?x=1&y=2",
    "http://crm.example.com/hooks/chat/7",
    "http://crm.example.com:80/hooks/chat/7",
]
SIGNED = [  # the URL Twilio may have signed
    "https://crm.example.com/hooks/calllog/7",
    "https://crm.example.com:443/hooks/calllog/7",
    "https://crm.example.com:444/hooks/calllog/7",
    "https://crm.example.com:8443/hooks/calllog/7?x=1&y=2",
    "https://crm.example.com/hooks/calllog/7?x=1&y=2",
    "https://crm.example.com:80/hooks/calllog/7",
    "http://crm.example.com/hooks/chat/7",
    "http://crm.example.com:80/hooks/chat/7",
    "http://crm.example.com:443/hooks/chat/7",
    "https://crm.example.com/hooks/chat/7",
    "https://crm.example.com/hooks/calllog/7/",
    "https://other.example.com/hooks/calllog/7",
]


@pytest.mark.parametrize("configured", CONFIGURED)
def test_we_take_a_twilio_signature_exactly_when_the_sdk_does(configured: str) -> None:
    accepted = 0
    for signed in SIGNED:
        signature = sdk_signature(TOKEN, signed, TWILIO_NO_ANSWER)
        sdk = sdk_accepts(TOKEN, configured, TWILIO_NO_ANSWER, signature)
        assert ours_accept(configured, TWILIO_NO_ANSWER, signature) == sdk, (configured, signed)
        accepted += sdk
    assert accepted == 2  # the URL with its port and without it, nothing else


def test_repeated_parameters_and_the_sdks_own_vector() -> None:
    # Twilio's published example, computed by the SDK and by us
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert sdk_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio_signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    # A name sent several times (MMS media, WhatsApp buttons), a value repeated among them
    pairs = [("MediaUrl", "https://b"), ("Body", "hi"), ("MediaUrl", "https://a")]
    pairs += [("MediaUrl", "https://a"), ("Empty", "")]
    signature = sdk_signature(TOKEN, url, pairs)
    assert sdk_accepts(TOKEN, url, pairs, signature) and ours_accept(url, pairs, signature)
    fewer = [p for p in pairs if p != ("MediaUrl", "https://b")]
    assert not sdk_accepts(TOKEN, url, fewer, signature)
    assert not ours_accept(url, fewer, signature)
    # A signature over nothing but the URL (no parameters)
    bare = sdk_signature(TOKEN, url, [])
    assert ours_accept(url, [], bare) and sdk_accepts(TOKEN, url, [], bare)


def test_a_shared_key_signature_is_refused() -> None:
    url = "https://crm.example.com/hooks/calllog/7"
    signature = sdk_signature(TOKEN, url, TWILIO_NO_ANSWER)
    with pytest.raises(BadSignature, match="shared key"):
        check_twilio(
            TOKEN,
            url,
            TWILIO_NO_ANSWER.items(),
            signature,
            "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
        )
    check_twilio(TOKEN, url, TWILIO_NO_ANSWER.items(), signature, "key=k,algorithm=HMAC_SHA1")


# --- Twilio Voice over HTTP ------------------------------------------------------------


def voice_source(api: httpx.Client, base: str = "https://crm.example.com", **fields: Any) -> Any:
    fields.setdefault("employees", {OUR_NUMBER: "anna@example.com"})
    return source(
        api, kind="twilio_voice", name="Twilio", auth_token=TOKEN, public_base_url=base, **fields
    )


def post_signed_over(
    api: httpx.Client, signed_url: str, path: str, params: dict[str, str]
) -> httpx.Response:
    """Post `params` to `path` as Twilio does, signed by its SDK over `signed_url`."""
    signature = sdk_signature(TOKEN, signed_url, params)
    return api.post(
        path, content=urlencode(params), headers={**FORM, "X-Twilio-Signature": signature}
    )


def test_twilio_voice_takes_the_port_variants_the_sdk_takes(
    api: httpx.Client, runtime: Runtime
) -> None:
    create_user(api, "anna@example.com")
    hook = voice_source(api)
    path = f"/hooks/calllog/{hook['id']}"
    ringing = {**TWILIO_NO_ANSWER, "CallStatus": "ringing"}  # answered 202, nothing stored
    for signed in ("https://crm.example.com", "https://crm.example.com:443"):
        response = post_signed_over(api, signed + path, path, ringing)
        assert response.status_code == 202, (signed, response.text)
        assert response.json()["accepted"] == 0
    for signed in ("https://crm.example.com:8443", "http://crm.example.com:443"):
        assert post_signed_over(api, signed + path, path, ringing).status_code == 401

    # A source behind a non-default port: signed with it, or without any port
    other = voice_source(api, base="https://crm.example.com:8443")
    other_path = f"/hooks/calllog/{other['id']}"
    for signed, expected in (
        ("https://crm.example.com:8443", 202),
        ("https://crm.example.com", 202),
        ("https://crm.example.com:443", 401),
    ):
        response = post_signed_over(api, signed + other_path, other_path, ringing)
        assert response.status_code == expected, (signed, response.text)
        assert sdk_accepts(
            TOKEN,
            "https://crm.example.com:8443" + other_path,
            ringing,
            sdk_signature(TOKEN, signed + other_path, ringing),
        ) == (expected == 202)
    assert stored_count(runtime) == 0


def test_an_unsigned_voice_callback_is_refused_before_it_is_read(
    api: httpx.Client, runtime: Runtime
) -> None:
    hook = voice_source(api)
    path = f"/hooks/calllog/{hook['id']}"
    good = sdk_signature(TOKEN, "https://crm.example.com" + path, TWILIO_NO_ANSWER)
    for body, headers in (
        (b"\xff=\xfe&&", FORM),  # no form at all, unsigned
        (b"CallSid=bad&From=nobody", FORM),  # a form of no call, unsigned
        (b"CallSid=bad&From=nobody", {**FORM, "X-Twilio-Signature": good}),  # signed otherwise
        (b"\xff=\xfe&&", {**FORM, "X-Twilio-Signature": good}),
    ):
        response = api.post(path, content=body, headers=headers)
        assert response.status_code == 401, (body, response.text)
    # A signed callback that is no call is, in its turn, bad input
    bad = {**TWILIO_NO_ANSWER, "CallSid": "not-a-sid"}
    signed_bad = post_signed_over(api, "https://crm.example.com" + path, path, bad)
    assert signed_bad.status_code == 422 and "CallSid" in signed_bad.text
    assert stored_count(runtime) == 0


def dial_leg(call_sid: str, status: str, from_: str, to: str, **fields: str) -> dict[str, str]:
    """A `<Dial>` child leg's status callback: its own CallSid, the parent's ParentCallSid,
    `Direction=outbound-dial`, `From` the caller ID it presented, `To` the number dialed."""
    return {
        **TWILIO_NO_ANSWER,
        "CallSid": call_sid,
        "ParentCallSid": "CA00112233445566778899aabbccddeeff",
        "Direction": "outbound-dial",
        "CallStatus": status,
        "From": from_,
        "Caller": from_,
        "To": to,
        "Called": to,
        **fields,
    }


def test_a_dial_leg_is_the_outgoing_leg_of_its_parent_call(
    api: httpx.Client, runtime: Runtime, worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    target = card_with_phone(api, anna["id"])
    # Anna's Twilio number, with her id as an integer
    hook = voice_source(api, employees={"+1 (415) 555-0100": anna["id"]})
    assert hook["settings"]["employees"] == {"+1 (415) 555-0100": anna["id"]}
    path = f"/hooks/calllog/{hook['id']}"

    def post(params: dict[str, str]) -> httpx.Response:
        return post_signed_over(api, "https://crm.example.com:443" + path, path, params)

    # The customer called our number; <Dial> put the call through to Anna's mobile, with
    # the customer's caller ID (Twilio's default): she answered, 42 s
    forwarded = dial_leg(
        "CA10000000000000000000000000000001",
        "completed",
        CUSTOMER,
        ANNA_MOBILE,
        CallDuration="42",
        Timestamp="Sun, 22 Nov 2026 09:15:42 -0000",
    )
    response = post(forwarded)
    assert response.status_code == 202, response.text
    # Anna calls the customer back from the web client: <Dial callerId=our number>
    callback = dial_leg(
        "CA10000000000000000000000000000002",
        "no-answer",
        OUR_NUMBER,
        "06 12 34 56 78",
        Timestamp="Sun, 22 Nov 2026 10:00:00",
    )
    assert post(callback).status_code == 202
    wait_for(lambda: all_done(api, 2), what="the two legs")

    entries = {e["call_id"]: e for e in history(api, target["id"]) if e["type"] == "call"}
    taken = entries[forwarded["CallSid"]]
    assert (taken["direction"], taken["outcome"], taken["duration_seconds"]) == (
        "incoming",
        "answered",
        42,
    )
    assert taken["number"] == CUSTOMER and taken["employee"]["id"] == anna["id"]
    # -0000 ("no zone information") and no offset at all are UTC
    assert taken["occurred_at"] == "2026-11-22T09:15:00Z"
    made = entries[callback["CallSid"]]
    assert (made["direction"], made["outcome"], made["number"]) == ("outgoing", "missed", CUSTOMER)
    assert made["employee"]["id"] == anna["id"]
    assert made["occurred_at"] == "2026-11-22T10:00:00Z"
    statuses = {i["status"] for i in api.get("/api/inbound").json()["items"]}
    assert statuses == {"processed"}


def test_a_dial_leg_to_a_number_of_nobodys_is_named(api: httpx.Client, runtime: Runtime) -> None:
    anna = create_user(api, "anna@example.com")
    bob = create_user(api, "bob@example.com")
    hook = voice_source(
        api, employees={OUR_NUMBER: anna["id"], "+14155550199": bob["email"], "client:bob": 7}
    )
    path = f"/hooks/calllog/{hook['id']}"
    url = "https://crm.example.com" + path
    # Two employees' numbers: which of them the customer called is not in the leg
    leg = dial_leg("CA10000000000000000000000000000003", "completed", CUSTOMER, ANNA_MOBILE)
    refused = post_signed_over(api, url, path, leg)
    assert refused.status_code == 422
    assert ANNA_MOBILE in refused.json()["detail"] and "employees" in refused.json()["detail"]
    # Put through to a Twilio client listed in employees: taken
    to_client = dial_leg("CA10000000000000000000000000000004", "completed", CUSTOMER, "client:bob")
    assert post_signed_over(api, url, path, to_client).status_code == 202
    # An employee given as neither an id nor an e-mail is refused when the source is made
    wrong = api.post(
        "/api/sources",
        json={
            "kind": "twilio_voice",
            "name": "T",
            "auth_token": TOKEN,
            "public_base_url": "https://crm.example.com",
            "employees": {OUR_NUMBER: "anna"},
        },
    )
    assert wrong.status_code == 422


def test_a_timestamp_without_an_offset_is_utc_and_an_absurd_one_is_refused(
    api: httpx.Client, runtime: Runtime, worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    target = card_with_phone(api, anna["id"])
    hook = voice_source(api)
    path = f"/hooks/calllog/{hook['id']}"
    url = "https://crm.example.com" + path
    unknown_zone = {**TWILIO_NO_ANSWER, "Timestamp": "Sun, 22 Nov 2026 09:15:00 -0000"}
    assert post_signed_over(api, url, path, unknown_zone).status_code == 202
    wait_for(lambda: all_done(api, 1), what="the call")
    [entry] = history(api, target["id"])
    assert entry["occurred_at"] == "2026-11-22T09:15:00Z"
    [item] = api.get("/api/inbound").json()["items"]
    assert (item["status"], item["attempts"]) == ("processed", 1)
    absurd = {
        **TWILIO_NO_ANSWER,
        "CallSid": "CA20000000000000000000000000000001",
        "Timestamp": "Sun, 22 Nov 9999 09:15:00 +0000",
    }
    refused = post_signed_over(api, url, path, absurd)
    assert refused.status_code == 422 and "Timestamp" in refused.text


# --- Stripe ----------------------------------------------------------------------------


def test_stripe_events_signed_by_the_sdk_are_taken_as_the_sdk_takes_them(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    deal = card_with_phone(api, anna["id"])
    hook = stripe_source(api)
    now = int(clock().timestamp())
    event = stripe_event(
        "payment_intent.succeeded",
        payment_intent("pi_SDK", 1999, metadata={"card_id": str(deal["id"])}),
        "evt_SDK",
        now,
    )
    body = json.dumps(event).encode()
    header = stripe_header(body, now, SIGNING_SECRET)
    assert stripe_accepts(body, header, SIGNING_SECRET)  # the SDK's own check
    tampered = body.replace(b"1999", b"1")
    assert not stripe_accepts(tampered, header, SIGNING_SECRET)
    json_headers = {"Content-Type": "application/json"}
    refused = api.post(
        hook["hook_url"], content=tampered, headers={**json_headers, "Stripe-Signature": header}
    )
    assert refused.status_code == 401 and stored_count(runtime) == 0
    # While a secret is rolled: one v1 per secret, the SDK and we take either
    rolled = stripe_header(body, now, "whsec_old", SIGNING_SECRET)
    assert stripe_accepts(body, rolled, SIGNING_SECRET)
    response = api.post(
        hook["hook_url"], content=body, headers={**json_headers, "Stripe-Signature": rolled}
    )
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text
    wait_for(lambda: all_done(api, 1), what="the payment")
    assert [p["payment_id"] for p in payments_of(api, deal["id"])] == ["pi_SDK"]


# --- a worker on the wrong database ----------------------------------------------------


def _unknown(api: httpx.Client) -> float:
    return sum(
        float(sample.value)
        for family in read_metrics(api).values()
        for sample in family.samples
        if sample.name == "crm_inbound_unknown_total" and sample.labels.get("channel") == "call"
    )


def test_a_worker_given_an_id_its_database_lacks_warns_and_counts_it(
    api: httpx.Client, runtime: Runtime, worker: None, caplog: pytest.LogCaptureFixture
) -> None:
    before = _unknown(api)
    caplog.set_level(logging.WARNING, logger="worker")
    runtime.pipeline.enqueue("call", 987_654)
    wait_for(lambda: _unknown(api) == before + 1, what="the unknown id counted")
    warned = [r for r in caplog.records if r.name == "worker" and r.levelno == logging.WARNING]
    assert any("987654" in r.getMessage() and "database" in r.getMessage() for r in warned)
    assert stored_count(runtime) == 0
