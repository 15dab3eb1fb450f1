"""A few generated forwards (tests/support/forward_cases.py) through the real SMTP socket and
the worker: the card's history shows the customer's original (HTML-only of each client,
format=flowed, non-Latin names and subjects), as the unit-level cases in
test_forward_shapes.py expect.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.forward_cases import ARCHIVE, Case, all_cases
from tests.support.helpers import archive_address, create_card, history, send, wait_for

PICKED = (
    "sv-thunderbird_html",
    "pl-outlook_html",
    "nl-gmail_html",
    "it-apple_html",
    "cs-thunderbird_flowed",
    "ru-thunderbird_text",  # Cyrillic subject
    "ja-outlook_html",  # CJK display name
    "el-thunderbird_html",  # Greek display name
)
CASES = [case for case in all_cases() if case.id in PICKED]


def test_the_picked_cases_exist() -> None:
    assert sorted(case.id for case in CASES) == sorted(PICKED)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_generated_forward_lands_as_the_original(
    api: httpx.Client, smtp_server: tuple[str, int], worker: None, case: Case
) -> None:
    # Given Anna, in Paris, forwarding a customer's mail to her card's archive address
    response = api.post(
        "/api/users",
        json={"email": "anna@example.com", "name": "Anna Sales", "timezone": "Europe/Paris"},
    )
    card = create_card(api, response.json()["id"])
    address = archive_address(api, card["id"])
    raw = case.raw.replace(ARCHIVE.encode(), address.encode())
    send(smtp_server, raw, address, "anna@example.com")

    [entry] = wait_for(lambda: history(api, card["id"]), timeout=30, what="the history entry")
    expected = case.expected
    assert expected is not None
    assert entry["forwarded"] is True, case.source
    assert entry["from"] == {"name": expected.name, "address": expected.address}
    assert entry["subject"] == expected.subject
    assert entry["occurred_at"] == "2021-10-27T07:31:00Z"
    assert entry["text"].startswith(expected.body_start)
    assert entry["note"] == expected.note
