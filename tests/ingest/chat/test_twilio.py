"""SMS, MMS and WhatsApp through Twilio over real HTTP: Twilio's published signature vector,
each message shape, and signature failures at the hook.

SPEC "Chat, WhatsApp, SMS" and "Which card?"; seeds 000, 001, 002.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import httpx
import pytest

from ingest.runtime import Runtime
from ingest.signatures import (
    BadSignature,
    check_twilio,
    twilio_signature,
)
from tests.conftest import FakeClock
from tests.support.calllog import all_done, card_with_phone, stored_count
from tests.support.chat import (
    SMS,
    TWILIO_TOKEN,
    card,
    comment,
    kanban,
    path_of,
    post_twilio,
    twilio_source,
)
from tests.support.helpers import counters, create_user, history, wait_for
from tests.support.provider_sdks import twilio_signature as sdk_signature

# --- Twilio SMS and WhatsApp -----------------------------------------------------------


def test_twilio_published_signature_vector() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert twilio_signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    check_twilio("12345", url, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    with pytest.raises(BadSignature):
        check_twilio(
            "12345", url, {**params, "Digits": "1235"}.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        )


def test_twilio_sms_mms_and_whatsapp(
    api: httpx.Client, runtime: Runtime, worker: None, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    bob = create_user(api, "bob@example.com")
    deal = card_with_phone(api, anna["id"])
    other = card_with_phone(api, anna["id"], "+33 1 40 00 00 00", title="Other deal")
    comment(api, clock, other["id"], bob["id"])
    assert kanban(api) == [other["id"], deal["id"]]
    hook = twilio_source(api)

    forged = post_twilio(api, hook, SMS, token="another-token")
    assert forged.status_code == 401 and stored_count(runtime) == 0
    # The query is part of what Twilio signs
    response = post_twilio(api, hook, SMS, query="?tenant=acme")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Response></Response>" in response.text

    mms = {
        **SMS,
        "MessageSid": "MM0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "Body": "",
        "NumMedia": "1",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC25/Messages/MM0a/Media/ME1",
        "MediaContentType0": "image/png",
    }
    whatsapp = {
        **SMS,
        "MessageSid": "SM9a8b7c6d5e4f30211203f4e5d6c7b8a9",
        "Body": "Sent from WhatsApp",
        "From": "whatsapp:+33612345678",
        "To": "whatsapp:+14155238886",
        "ProfileName": "John Doe",
        "WaId": "33612345678",
    }
    for params in (mms, whatsapp):
        assert post_twilio(api, hook, params).status_code == 200
    wait_for(lambda: all_done(api, 3), what="three Twilio messages")
    entries = {e["message_id"]: e for e in history(api, deal["id"])}
    sms = entries[SMS["MessageSid"]]
    assert (sms["type"], sms["text"], sms["provider"]) == ("sms", SMS["Body"], "twilio")
    assert entries[mms["MessageSid"]]["media"] == [
        {"url": mms["MediaUrl0"], "media_type": "image/png"}
    ]
    wa = entries[whatsapp["MessageSid"]]
    assert wa["type"] == "whatsapp" and wa["from"]["name"] == "John Doe"
    assert counters(api, anna["id"])["incoming"] == 3
    assert card(api, deal["id"])["unread"] is True
    assert kanban(api) == [deal["id"], other["id"]]
    # Processed in parallel: the last one processed gives the reason
    assert card(api, deal["id"])["focus_reason"] in {"incoming SMS", "incoming WhatsApp message"}
    waiting = api.get("/api/activities", params={"card_id": deal["id"]}).json()["items"]
    assert sorted(a["type"] for a in waiting) == ["sms", "sms", "whatsapp"]

    # A status callback on a message the company sent is not a customer message
    callback = {
        "MessageSid": "SM7e6d5c4b3a2910f8e7d6c5b4a3928170",
        "MessageStatus": "delivered",
        "SmsSid": "SM7e6d5c4b3a2910f8e7d6c5b4a3928170",
        "SmsStatus": "delivered",
        "AccountSid": SMS["AccountSid"],
        "From": "+33757000000",
        "To": "+33612345678",
        "ApiVersion": "2010-04-01",
    }
    assert post_twilio(api, hook, callback).status_code == 200
    wait_for(lambda: all_done(api, 4), what="the status callback")
    assert len(history(api, deal["id"])) == 3
    assert counters(api, anna["id"])["incoming"] == 3

    # Twilio retries a message it got no answer for: the same item, nothing new
    assert post_twilio(api, hook, SMS).status_code == 200
    assert stored_count(runtime) == 4

    for params, expected in (
        ({**SMS, "MessageSid": "SMx"}, "MessageSid: String should match pattern"),
        ({**SMS, "From": "whatsapp:hello"}, "From: "),
        ({**SMS, "NumMedia": "2", "Body": ""}, "MediaUrl0: missing"),
    ):
        refused = post_twilio(api, hook, params)
        assert refused.status_code == 422 and refused.json()["detail"].startswith(expected)
    assert stored_count(runtime) == 4


def test_twilio_signature_failures_at_the_hook(api: httpx.Client, runtime: Runtime) -> None:
    hook = twilio_source(api)
    assert TWILIO_TOKEN not in json.dumps(api.get(f"/api/sources/{hook['id']}").json())
    path = path_of(hook)
    good = sdk_signature(TWILIO_TOKEN, "https://crm.example.com" + path, SMS)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    missing = api.post(path, content=urlencode(SMS), headers=form)
    tampered = api.post(
        path,
        content=urlencode({**SMS, "Body": "Pay to IBAN X"}),
        headers={**form, "X-Twilio-Signature": good},
    )
    # Signed for the address behind the proxy, not the public one Twilio called
    internal = sdk_signature(TWILIO_TOKEN, "http://127.0.0.1:8000" + path, SMS)
    wrong_url = api.post(
        path, content=urlencode(SMS), headers={**form, "X-Twilio-Signature": internal}
    )
    junk = api.post(path, content=b"\xff=\xfe&&", headers={**form, "X-Twilio-Signature": good})
    for response in (missing, tampered, wrong_url, junk):
        assert response.status_code == 401, response.text
    assert "X-Twilio-Signature" in missing.json()["detail"]
    assert stored_count(runtime) == 0
    # The good signature, for the record, is accepted
    ok = api.post(path, content=urlencode(SMS), headers={**form, "X-Twilio-Signature": good})
    assert ok.status_code == 200 and stored_count(runtime) == 1
