"""Signing as the providers do, with their official Python SDKs (`twilio`, `stripe`; test
dependencies, and this is the only module importing them): the hooks' tests send what the
SDKs sign, and check that the SDKs themselves accept it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import stripe
from twilio.request_validator import RequestValidator


class _MultiDict:
    """Form parameters as a web framework hands them to Twilio's validator: each name with
    all its values (`getall`, as Flask's MultiDict), in order."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def getall(self, name: str) -> list[str]:
        return self._values[name]


def _pairs(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(params.items()) if isinstance(params, Mapping) else list(params)


def twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str] | Iterable[tuple[str, str]]
) -> str:
    """`X-Twilio-Signature` for a form post of `params` to `url`, computed by Twilio's SDK."""
    validator = RequestValidator(auth_token)
    return str(validator.compute_signature(url, _MultiDict(_pairs(params))))


def twilio_accepts(
    auth_token: str,
    url: str,
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    signature: str,
) -> bool:
    """Whether Twilio's SDK validator takes `signature` for a post of `params` to `url`."""
    validator = RequestValidator(auth_token)
    return bool(validator.validate(url, _MultiDict(_pairs(params)), signature))


def stripe_header(body: bytes, timestamp: int, *secrets: str) -> str:
    """`Stripe-Signature` as Stripe's SDK makes it (`WebhookSignature.generate_signature_header`:
    `t=<unix>,v1=<hex>`), with one `v1` per secret as Stripe sends while a secret is rolled."""
    payload = body.decode()
    parts = [
        stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
        for secret in secrets
    ]
    stamp = f"t={timestamp}"
    assert all(part.startswith(stamp + ",") for part in parts)
    return ",".join([stamp, *(part.removeprefix(stamp + ",") for part in parts)])


def stripe_accepts(body: bytes, header: str, secret: str) -> bool:
    """Whether Stripe's SDK (`stripe.Webhook.construct_event`) takes the signed event."""
    try:
        stripe.Webhook.construct_event(body, header, secret)
    except stripe.SignatureVerificationError:
        return False
    return True
