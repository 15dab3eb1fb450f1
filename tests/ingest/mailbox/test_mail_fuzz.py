"""Mutated messages never crash or stall the e-mail step: each one ends processed or
rejected with a reason, through the real processing function and database.

Hypothesis mutates real messages (the mime fixtures and forwards wrapped in a message):
flipped and inserted bytes, cut messages, duplicated or garbage header lines. Each is
stored in the inbound store and processed as a worker would (the broker is left out: it
only carries the id). The deadline is a hang guard (seconds per message), not a speed claim.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_core import card_cases, user_cases
from crm_core.db import unit_of_work
from crm_core.models import utcnow
from ingest import inbound, processing
from ingest.mailbox.addresses import encode_archive_address, hash_archive_token, new_archive_token
from ingest.mailbox.parsing import parse_email
from ingest.mailbox.processing import CHANNEL as EMAIL
from ingest.runtime import Runtime
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


@pytest.fixture
def archive(runtime: Runtime) -> str:
    """A card whose responsible and the seeds' senders are CRM users; its archive address."""
    senders = {"anna@example.com"}
    for raw in SEEDS:
        parsed = parse_email(raw)
        if parsed.sender:
            senders.add(parsed.sender[1].lower())
    with unit_of_work(runtime.sessions) as session:
        users = [user_cases.create_user(session, address, address) for address in sorted(senders)]
        card = card_cases.create_card(
            session,
            title="Fuzz",
            entity_type="deal",
            stage="new",
            responsible_id=users[0].id,
            contact_emails=[],
            contact_phones=[],
            default_region="FR",
        )
        token = new_archive_token()
        card_cases.issue_archive_address(
            session, card.id, hash_archive_token(token), timedelta(0), utcnow()
        )
    return encode_archive_address(token, "archive.test")


@settings(
    max_examples=200,
    deadline=timedelta(seconds=10),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(seed=st.sampled_from(range(len(SEEDS))), steps=st.lists(mutation, max_size=6))
def test_mutated_messages_end_processed_or_rejected(
    runtime: Runtime, archive: str, seed: int, steps: list[tuple[Any, ...]]
) -> None:
    raw = _mutate(SEEDS[seed], steps)
    [item_id] = inbound.store(
        runtime.commits,
        [
            inbound.NewInput(
                channel="email",
                raw=raw,
                recipient=archive,
                dedupe_key="fuzz:" + hashlib.sha256(raw).hexdigest(),
            )
        ],
    )
    # Hundreds of mails from the few senders of the seeds: no loop limit here (its own test).
    unlimited = runtime.settings.model_copy(update={"loop_limit_count": 10**9})
    processing.process(runtime.sessions, EMAIL, unlimited, item_id)
    item = processing.load(runtime.sessions, item_id)
    assert item is not None
    assert item.status in ("processed", "rejected"), (item.status, item.error)
    if item.status == "rejected":
        assert item.reason  # refused, and says why
