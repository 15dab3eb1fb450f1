"""Every generated forward (tests/support/forward_cases.py) through parse_email and
find_original: the customer's original message is found in each client's layout in each
language, and replies and plain mails are not forwards.
"""

from __future__ import annotations

import pytest

from ingest.mailbox.parsing import parse_email
from tests.support.forward_cases import EXCLUDED, Case, all_cases, find
from tests.support.forward_layouts import LAYOUTS, TIMEZONE

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_forward_shape(case: Case) -> None:
    parsed = parse_email(case.raw)
    found = find(parsed.text, parsed.subject, TIMEZONE, parsed.html)
    expected = case.expected
    if expected is None:  # a reply or the user's own mail
        assert found is None, f"not a forward ({case.source})"
        return
    assert found is not None, f"no forward found ({case.source})"
    assert found.sender is not None
    assert found.sender[1] == expected.address
    assert found.sender[0] == expected.name
    assert found.subject == expected.subject
    assert found.date == expected.date
    assert found.text.startswith(expected.body_start), found.text[:200]
    assert found.note == expected.note


def test_the_material_covers_many_languages_and_every_client_in_both_forms() -> None:
    languages = {case.locale.split("-")[0] for case in CASES} - EXCLUDED
    assert len(languages) >= 16, sorted(languages)
    assert len(CASES) >= 150
    layouts = {case.layout for case in CASES}
    assert layouts == set(LAYOUTS)
    for client in ("thunderbird", "outlook", "gmail", "apple"):
        assert {f"{client}_text", f"{client}_html"} <= layouts
    # at least two negative cases (a reply, a plain mail) per language
    assert sum(case.expected is None for case in CASES) >= 2 * len(languages)
