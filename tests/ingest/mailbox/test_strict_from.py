"""Strict From parsing in the worker: a message whose author is ambiguous (two From headers,
two addresses, the comment trick of CVE-2023-27043) is rejected with the reason."""

from __future__ import annotations

from email.policy import SMTP

import httpx
import pytest

from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    history,
    inbound_items,
    make_mail,
    send,
    wait_for,
)


@pytest.mark.parametrize(
    ("from_lines", "reason"),
    [
        (
            ["From: anna@example.com(<boss@bank.test>"],
            "the From header is malformed (end of header inside comment): "
            "'anna@example.com(<boss@bank.test>'",
        ),
        (
            ["From: anna@example.com, boss@bank.test"],
            "the From header has 2 addresses; exactly one is required",
        ),
        (
            ["From: anna@example.com", "From: boss@bank.test"],
            "the message has 2 From headers; exactly one is required",
        ),
        (
            ["From: g:;(victim@bank.test)"],  # breaks the standard library's parser
            "the From header cannot be read: 'g:;(victim@bank.test)'",
        ),
        (
            ["From: " + "a" * 250 + "@example.com"],
            "the From address is longer than 254 characters",
        ),
    ],
    ids=["comment-trick", "two-addresses", "two-from-headers", "parser-crash", "too-long"],
)
def test_an_ambiguous_author_is_rejected_by_the_worker_with_the_reason(
    api: httpx.Client,
    smtp_server: tuple[str, int],
    worker: None,
    from_lines: list[str],
    reason: str,
) -> None:
    user = create_user(api, "anna@example.com", "Anna")
    card = create_card(api, int(user["id"]))
    address = archive_address(api, int(card["id"]))
    body = make_mail("anna@example.com", address).as_bytes(policy=SMTP).split(b"\r\n", 1)[1]
    raw = "\r\n".join(from_lines).encode() + b"\r\n" + body  # in place of its own From
    send(smtp_server, raw, address, "anna@example.com")
    [item] = wait_for(lambda: inbound_items(api, "rejected"), what="the rejection")
    assert item["reason"] == reason
    assert history(api, card["id"]) == []
