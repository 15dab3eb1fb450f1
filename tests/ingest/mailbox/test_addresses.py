"""Addresses: archive address tokens (entropy, case, plus-addressing, only the hash
stored); e-mail addresses the API takes (any RFC 5322 address, reserved names included);
and the host of an IMAP mailbox (a host name or an IP address, nothing else).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_core.errors import InvalidInput
from crm_core.models import ArchiveAddress
from ingest.mailbox import mailboxes
from ingest.mailbox.addresses import (
    decode_archive_address,
    encode_archive_address,
    hash_archive_token,
    new_archive_token,
)
from ingest.runtime import Runtime
from tests.support.helpers import archive_address, create_card, create_user


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


# --- e-mail addresses -------------------------------------------------------------------

# Valid RFC 5322 addresses that email-validator's defaults refuse: special-use and reserved
# names (companies run internal .local domains), a name without a dot, a quoted local part,
# an address literal; and an internationalized one (RFC 6531).
VALID_ADDRESSES = [
    "alice@corp.local",
    "x@company.test",
    "it@intranet.corp.local",
    "ops@localhost",
    "root@mail.example.invalid",
    '"john doe"@corp.local',
    "u@[192.0.2.7]",
    "jörg@exämple.de",
]
INVALID_ADDRESSES = [
    "alice",
    "alice@",
    "@corp.local",
    "a b@corp.local",
    "alice@corp..local",
    "alice@-corp.local",
    "alice@corp.local\r\nBcc: x@y.z",
]


@pytest.mark.parametrize("address", VALID_ADDRESSES)
def test_any_valid_address_is_a_user_s_address(api: httpx.Client, address: str) -> None:
    response = api.post("/api/users", json={"email": address, "name": "Someone"})
    assert response.status_code == 201, response.text
    assert response.json()["email"] == address.lower()


def test_a_contact_address_on_a_reserved_name_is_taken(api: httpx.Client) -> None:
    anna = create_user(api, "anna@corp.local")
    response = api.post(
        "/api/cards",
        json={
            "title": "Internal deal",
            "entity_type": "deal",
            "stage": "new",
            "responsible_id": anna["id"],
            "contact_emails": ["alice@corp.local", "x@company.test"],
        },
    )
    assert response.status_code == 201, response.text
    [contact_a, contact_x] = sorted(response.json()["contacts"], key=lambda c: c["emails"])
    assert (contact_a["emails"], contact_x["emails"]) == (["alice@corp.local"], ["x@company.test"])


@pytest.mark.parametrize("address", INVALID_ADDRESSES)
def test_an_invalid_address_is_a_422_naming_the_field(api: httpx.Client, address: str) -> None:
    response = api.post("/api/users", json={"email": address, "name": "Someone"})
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "email"]
    assert problem["msg"].startswith("Value error, not an e-mail address: ")
    assert api.get("/api/users").json()["items"] == []


# --- IMAP mailbox hosts -----------------------------------------------------------------

MAILBOX = {"port": 993, "security": "tls", "username": "u", "password": "p"}
VALID_HOSTS = ["imap.example.com", "mail-1.corp.local", "imap", "192.0.2.7", "2001:db8::7"]
INVALID_HOSTS = [
    "imap.example.com\r\nA01 LOGOUT",  # control characters: a command smuggled in
    "imap.example.com\x00",
    "imap\texample.com",
    "imap example.com",
    "-imap.example.com",
    "imap.example.com.",
    "imap..example.com",
    "imap_1.example.com",
    "[2001:db8::7]",
    "fe80::1%eth0",
    "x" * 64 + ".example.com",
    "",
]


@pytest.mark.parametrize("host", VALID_HOSTS)
def test_a_mailbox_host_is_a_host_name_or_an_ip_address(api: httpx.Client, host: str) -> None:
    response = api.post("/api/mailboxes", json={**MAILBOX, "host": host})
    assert response.status_code == 201, response.text
    assert response.json()["host"] == host


@pytest.mark.parametrize("host", INVALID_HOSTS)
def test_any_other_mailbox_host_is_a_422_naming_the_field(api: httpx.Client, host: str) -> None:
    response = api.post("/api/mailboxes", json={**MAILBOX, "host": host})
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "host"]
    assert "must be a host name" in problem["msg"] and "or an IP address" in problem["msg"]
    assert api.get("/api/mailboxes").json()["items"] == []


def test_the_cli_s_way_in_refuses_a_bad_host_too(runtime: Runtime) -> None:
    fields: dict[str, Any] = {
        "name": "",
        "port": 993,
        "security": "tls",
        "username": "u",
        "password": "p",
        "oauth2_token": None,
        "folder": "INBOX",
        "processed_folder": None,
    }
    with runtime.sessions() as session:
        with pytest.raises(InvalidInput, match=r"^host: must be a host name"):
            mailboxes.register(session, runtime.sealer, host="imap\r\n.example.com", **fields)
        assert mailboxes.register(session, runtime.sealer, host="::1", **fields).host == "::1"


def test_no_tls_is_for_this_machine_only(api: httpx.Client) -> None:
    """The schema's loopback pattern and the check agree (a password in clear otherwise)."""
    for host in ("localhost", "127.0.0.1", "127.255.0.9", "::1"):
        mine = api.post("/api/mailboxes", json={**MAILBOX, "security": "none", "host": host})
        assert mine.status_code == 201, mine.text
    for host in ("imap.example.com", "127.1", "10.0.0.1", "LOCALHOST.example.com"):
        other = api.post("/api/mailboxes", json={**MAILBOX, "security": "none", "host": host})
        assert other.status_code == 422, other.text
        assert other.json()["detail"].startswith('security: "none" would send the password')


def test_moving_mail_to_its_own_folder_leaves_it_there(api: httpx.Client) -> None:
    """A processed folder equal to the folder is no move: taken mail is flagged \\Seen."""
    body = {**MAILBOX, "host": "imap.example.com", "folder": "Sales", "processed_folder": "Sales"}
    response = api.post("/api/mailboxes", json=body)
    assert response.status_code == 201, response.text
    assert (response.json()["folder"], response.json()["processed_folder"]) == ("Sales", None)
