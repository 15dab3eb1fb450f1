"""Mutated messages never crash or stall the e-mail step: each one parses into a mail to
record (forward or not) or is refused with a reason.

Hypothesis mutates real messages (the mime fixtures and forwards wrapped in a message):
flipped and inserted bytes, cut messages, duplicated or garbage header lines. The deadline
is a hang guard (seconds per message), not a speed claim.
"""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import RejectedInput
from ingest.mailbox.forwarding import find_original
from ingest.mailbox.parsing import parse_email
from tests.conftest import FIXTURES


def _seeds() -> list[bytes]:
    raws = [p.read_bytes() for p in sorted((FIXTURES / "mime").glob("*.eml"))[:12]]
    for body in sorted((FIXTURES / "forwarded").glob("*_body*.txt"))[:12]:
        mail = EmailMessage()
        mail["From"] = "anna@example.com"
        mail["Subject"] = "Fwd: Integer consequat non purus"
        mail.set_content(body.read_text(encoding="utf-8"))
        raws.append(mail.as_bytes())
    return raws


SEEDS = _seeds()

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**7), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**7), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("cut"), st.integers(0, 10**7)),
    st.tuples(
        st.just("header"),
        st.sampled_from(
            [
                b"From: \r\n",
                b"Date: yesterday-ish\r\n",
                b"Subject: =?utf-8?B?////?=\r\n",
                b"Content-Type: multipart/mixed; boundary=\r\n",
                b"To: <<<@>>>\r\n",
                b"Content-Transfer-Encoding: base64\r\n",
                b"From: \xff\xfe <a@b.c>\r\n",
            ]
        ),
    ),
)


def _mutate(raw: bytes, steps: list[tuple[Any, ...]]) -> bytes:
    data = bytearray(raw)
    for kind, *args in steps:
        if kind == "flip" and data:
            data[args[0] % len(data)] = args[1]
        elif kind == "insert":
            at = args[0] % (len(data) + 1)
            data[at:at] = args[1]
        elif kind == "cut":
            data = data[: args[0] % (len(data) + 1)]
        elif kind == "header":
            data[0:0] = args[0]
    return bytes(data)


@settings(
    max_examples=300,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(seed=st.sampled_from(range(len(SEEDS))), steps=st.lists(mutation, max_size=6))
def test_mutated_messages_are_read_or_refused(seed: int, steps: list[tuple[Any, ...]]) -> None:
    raw = _mutate(SEEDS[seed], steps)
    try:
        parsed = parse_email(raw)
    except RejectedInput as refused:
        assert refused.reason  # refused, and says why
        return
    original = find_original(parsed.text, parsed.subject)
    if original is not None:
        assert isinstance(original.text, str) and isinstance(original.note, str)
