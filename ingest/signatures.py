"""Webhook signature checks, shared by every hook (call log, chat, payments).

All comparisons are constant-time (`hmac.compare_digest`). A failed check raises
`BadSignature` with a reason for the 401; nothing is stored before a check passes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

TOLERANCE_SECONDS = 300


class BadSignature(Exception):
    """The request is not from the source it claims to be: answered 401, nothing stored."""


def sign_timestamped(secret: str, timestamp: str, body: bytes) -> str:
    """Our own scheme: `sha256=` + hex HMAC-SHA256 of `timestamp + "." + body`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check_timestamped(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: datetime
) -> None:
    """`X-Timestamp` (Unix seconds, within 5 minutes of `now`) and `X-Signature`."""
    if not timestamp or not signature:
        raise BadSignature("X-Timestamp and X-Signature headers are required")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise BadSignature("X-Timestamp must be Unix seconds")
    if abs(now.timestamp() - int(timestamp)) > TOLERANCE_SECONDS:
        raise BadSignature(f"X-Timestamp is more than {TOLERANCE_SECONDS} s from our clock")
    expected = sign_timestamped(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise BadSignature("X-Signature does not match the body and the source's secret")


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's scheme: base64 HMAC-SHA1 of the full URL followed by every POST parameter,
    sorted by name, as name + value (repeated names: each value, in sorted order)."""
    data = url + "".join(name + value for name, value in sorted(params))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def check_twilio(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str | None
) -> None:
    if not signature:
        raise BadSignature("the X-Twilio-Signature header is required")
    expected = twilio_signature(auth_token, url, params)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise BadSignature("X-Twilio-Signature does not match the URL, parameters and token")


def hub_signature(app_secret: str, body: bytes) -> str:
    """Meta's scheme (WhatsApp Cloud API): `sha256=` + hex HMAC-SHA256 of the raw body,
    keyed with the app secret."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def check_hub(app_secret: str, body: bytes, signature: str | None) -> None:
    if not signature:
        raise BadSignature("the X-Hub-Signature-256 header is required")
    expected = hub_signature(app_secret, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise BadSignature("X-Hub-Signature-256 does not match the body and the app secret")


def stripe_signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """Stripe's scheme: hex HMAC-SHA256 of `timestamp + "." + body`, keyed with the
    endpoint's whole signing secret (`whsec_...`, used as given, as Stripe's libraries do)."""
    mac = hmac.new(signing_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return mac.hexdigest()


def check_stripe(signing_secret: str, header: str | None, body: bytes, now: datetime) -> None:
    """`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`: `t` within 5 minutes of
    `now` (either way), and any `v1` matching (Stripe sends one per live secret while a
    secret is rolled); other schemes (`v0`) are not signatures we trust."""
    if not header:
        raise BadSignature("the Stripe-Signature header is required")
    timestamp: str | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and timestamp is None:
            timestamp = value.strip()
        elif name == "v1":
            candidates.append(value.strip())
    if not timestamp or not candidates:
        raise BadSignature("Stripe-Signature needs t= and at least one v1=")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise BadSignature("Stripe-Signature: t must be Unix seconds")
    if abs(now.timestamp() - int(timestamp)) > TOLERANCE_SECONDS:
        raise BadSignature(f"Stripe-Signature: t is more than {TOLERANCE_SECONDS} s from our clock")
    expected = stripe_signature(signing_secret, timestamp, body).encode()
    # Every candidate is compared (no early exit), each in constant time.
    matches = [hmac.compare_digest(expected, c.encode()) for c in candidates]
    if not any(matches):
        raise BadSignature("no v1 of Stripe-Signature matches the body and the signing secret")
