"""Archive address tokens: entropy, case, plus-addressing, and only the hash stored."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from crm_core.models import ArchiveAddress
from ingest.mailbox.addresses import (
    decode_archive_address,
    encode_archive_address,
    hash_archive_token,
    new_archive_token,
)
from ingest.runtime import Runtime
from tests.helpers import archive_address, create_card, create_user


def test_token_is_160_bits_of_lower_case_base32() -> None:
    tokens = {new_archive_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in tokens:
        assert len(token) == 32  # 32 base32 characters = 160 bits
        assert set(token) <= set("abcdefghijklmnopqrstuvwxyz234567")


def test_decode_accepts_relayed_case_and_plus_addressing() -> None:
    token = new_archive_token()
    assert decode_archive_address(encode_archive_address(token, "archive.test")) == token
    assert decode_archive_address(f"<{token.upper()}@Archive.Test>") == token
    assert decode_archive_address(f"archive+{token}@company.com") == token


def test_decode_refuses_what_is_not_a_token() -> None:
    assert decode_archive_address("postmaster@archive.test") is None
    assert decode_archive_address("no-at-sign") is None
    assert decode_archive_address(f"{'a' * 31}@archive.test") is None
    assert decode_archive_address(f"{'1' * 32}@archive.test") is None  # 0, 1, 8, 9 are not base32


def test_only_the_hash_is_stored(api: httpx.Client, runtime: Runtime) -> None:
    user = create_user(api, "anna@example.com")
    card = create_card(api, user["id"])
    address = archive_address(api, card["id"])
    token = decode_archive_address(address)
    assert token is not None
    with runtime.sessions() as session:
        stored = list(session.scalars(select(ArchiveAddress.token_hash)))
    assert stored == [hash_archive_token(token)]
    assert token not in stored[0]


def test_archive_address_of_unknown_card_is_404(api: httpx.Client) -> None:
    response = api.post("/api/cards/999/archive-address")
    assert response.status_code == 404
    assert "card 999" in response.json()["detail"]
