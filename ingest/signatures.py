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
from urllib.parse import parse_qsl, urlparse

from ingest.provider import ActiveSource, HookAccepted, HookAnswer, HookRequest

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
    """Twilio's scheme: base64 HMAC-SHA1 of the URL followed by the POST parameters sorted
    by name, as name + value; a name sent several times gives each of its distinct values,
    sorted (as `twilio.request_validator.RequestValidator.compute_signature`)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def twilio_signed_urls(url: str) -> tuple[str, str]:
    """The two forms of `url` a Twilio signature may cover: without its port and with it
    (the explicit one, else the scheme's default: 443 for https, 80 otherwise). Twilio's
    signing is inconsistent about the port, so its SDK's validator accepts either, and so
    do we; both are rebuilt as `urllib.parse` does, as the SDK does."""
    parts = urlparse(url)
    if parts.port:
        with_port = parts.geturl()
        without_port = parts._replace(netloc=parts.netloc.split(":")[0]).geturl()
    else:
        without_port = parts.geturl()
        default = 443 if parts.scheme == "https" else 80
        with_port = parts._replace(netloc=f"{parts.netloc}:{default}").geturl()
    return without_port, with_port


def check_twilio(
    auth_token: str,
    url: str,
    params: Iterable[tuple[str, str]],
    signature: str | None,
    signature_settings: str | None = None,
) -> None:
    """`X-Twilio-Signature` over `url` (with or without its port) and `params`, as the SDK's
    `RequestValidator.validate` checks a form post signed with the auth token, and nothing
    more. A request signed with a Webhooks shared key (`X-Twilio-Webhooks-Signature-Settings`
    naming another algorithm than HMAC_SHA1) is refused: we hold the auth token only."""
    if not signature:
        raise BadSignature("the X-Twilio-Signature header is required")
    if _twilio_algorithm(signature_settings) != "HMAC_SHA1":
        raise BadSignature(
            "X-Twilio-Webhooks-Signature-Settings: signed with a shared key, which this source "
            "does not hold (it checks the auth token's HMAC-SHA1 signature)"
        )
    pairs = list(params)
    given = signature.encode()
    # Both forms are compared (no early exit), each in constant time.
    matches = [
        hmac.compare_digest(twilio_signature(auth_token, form, pairs).encode(), given)
        for form in twilio_signed_urls(url)
    ]
    if not any(matches):
        raise BadSignature("X-Twilio-Signature does not match the URL, parameters and token")


def _twilio_algorithm(settings: str | None) -> str:
    """The algorithm named by `X-Twilio-Webhooks-Signature-Settings` (`key=...,algorithm=...`);
    HMAC_SHA1, the auth token's, when the header or its `algorithm` is missing."""
    for part in (settings or "").split(","):
        name, separator, value = part.partition("=")
        if separator and name.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def check_twilio_form(
    auth_token: str,
    url: str,
    body: bytes,
    signature: str | None,
    signature_settings: str | None = None,
) -> list[tuple[str, str]]:
    """A Twilio webhook's form body, once its signature is checked: nothing of it is read
    before that, so a body that is no form at all is a bad signature (401), not bad input."""
    if not signature:
        raise BadSignature("the X-Twilio-Signature header is required")
    try:
        params = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise BadSignature("X-Twilio-Signature cannot match a body that is no form") from None
    check_twilio(auth_token, url, params, signature, signature_settings)
    return params


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


class TimestampSigned:
    """For a provider of ours (call log, widget, payment JSON): requests signed with
    `X-Timestamp` and `X-Signature` by a secret we generate, answered 202 with the ids."""

    secret_settings: tuple[str, ...] = ("secret",)
    generated_secret: str | None = "secret"  # noqa: S105 (the setting's name)

    def verify(self, source: ActiveSource, request: HookRequest, now: datetime) -> None:
        check_timestamped(
            source.secrets["secret"],
            request.headers.get("x-timestamp"),
            request.headers.get("x-signature"),
            request.body,
            now,
        )

    def answer(self, accepted: HookAccepted) -> HookAnswer:
        return HookAnswer(202)


class TwilioSigned:
    """For Twilio's webhooks (Voice, Messaging): form bodies signed with the account's auth
    token over the public URL (`X-Twilio-Signature`); the token is Twilio's, never ours."""

    secret_settings: tuple[str, ...] = ("auth_token",)
    generated_secret: str | None = None

    def verify(self, source: ActiveSource, request: HookRequest, now: datetime) -> None:
        check_twilio_form(
            source.secrets["auth_token"],
            str(source.settings["public_base_url"]).rstrip("/") + request.path_and_query,
            request.body,
            request.headers.get("x-twilio-signature"),
            request.headers.get("x-twilio-webhooks-signature-settings"),
        )

    def answer(self, accepted: HookAccepted) -> HookAnswer:
        return HookAnswer(202)
