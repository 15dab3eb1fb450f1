"""Fixtures of the mailbox tests: a real Dovecot per test module (Debian's dovecot-imapd), a
user of it, a card with its archive address, and an archive address of Anna's (SENDER)
for raw SMTP sessions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.dovecot import Dovecot
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
)
from tests.support.imap import User
from tests.support.smtp import SENDER


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def imap_user(dovecot: Dovecot) -> User:
    return dovecot.add_user()


@pytest.fixture
def card_token(api: httpx.Client) -> tuple[dict[str, Any], str]:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    return card, archive_address(api, card["id"])


@pytest.fixture
def address(api: httpx.Client) -> str:
    user = create_user(api, SENDER, "Anna Sales")
    return archive_address(api, int(create_card(api, int(user["id"]))["id"]))
