"""Small helpers for tests: API setup, real SMTP sends, polling without timed asserts."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any, TypeVar

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; a generous ceiling, not a speed test."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def create_user(api: httpx.Client, email: str, name: str = "A User") -> dict[str, Any]:
    response = api.post(
        "/api/users", json={"email": email, "name": name, "timezone": "Europe/Paris"}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def create_card(
    api: httpx.Client, responsible_id: int, title: str = "Acme deal", stage: str = "new"
) -> dict[str, Any]:
    response = api.post(
        "/api/cards",
        json={
            "title": title,
            "entity_type": "deal",
            "stage": stage,
            "responsible_id": responsible_id,
            "contact_emails": ["john.doe@acme.com"],
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def archive_address(api: httpx.Client, card_id: int) -> str:
    response = api.post(f"/api/cards/{card_id}/archive-address")
    assert response.status_code == 201, response.text
    return str(response.json()["address"])


def make_mail(
    sender: str, to: str, subject: str = "Quote", body: str = "Hello, here is the quote."
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 11, 20, 9, 30, tzinfo=UTC))
    message["Message-ID"] = make_msgid(domain="mail.example.com")
    message.set_content(body)
    return message


def send(server: tuple[str, int], message: EmailMessage | bytes, to: str, sender: str) -> None:
    """Deliver over a real SMTP session; raises smtplib errors on refusal."""
    with smtplib.SMTP(*server, timeout=30) as client:
        raw = message if isinstance(message, bytes) else message.as_bytes(policy=SMTP)
        client.sendmail(sender, [to], raw)


def inbound_items(api: httpx.Client, status: str | None = None) -> list[dict[str, Any]]:
    params = {"status": status} if status else {}
    response = api.get("/api/inbound", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def history(api: httpx.Client, card_id: int) -> list[dict[str, Any]]:
    response = api.get(f"/api/cards/{card_id}/history")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def counters(api: httpx.Client, user_id: int) -> dict[str, Any]:
    response = api.get(f"/api/users/{user_id}/counters")
    assert response.status_code == 200, response.text
    return dict(response.json())


def all_finished(api: httpx.Client) -> bool:
    items = inbound_items(api)
    return bool(items) and all(item["status"] != "received" for item in items)


def read_metrics(client: httpx.Client) -> dict[str, Metric]:
    """`GET /metrics` over HTTP, parsed as Prometheus parses it: metric families by name."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def grant(api: httpx.Client, user_id: int, **levels: str) -> None:
    """Give the user a role of their own: `deal="all"` grants every action on deals at that
    level; `deal_edit="none"` one action (the others stay at the default, "own")."""
    grants: dict[str, dict[str, str]] = {}
    for key, level in levels.items():
        entity, _, action = key.partition("_")
        if entity == "smart":
            entity, action = "smart_process", action.removeprefix("process_")
        actions = [action] if action else ["read", "add", "edit", "delete"]
        for one in actions:
            grants.setdefault(entity, {})[one] = level
    for entity in ("deal", "lead", "invoice", "smart_process"):
        for one in ("read", "add", "edit", "delete"):
            grants.setdefault(entity, {}).setdefault(one, "own")
    role = api.post("/api/roles", json={"name": f"role of user {user_id}", "permissions": grants})
    assert role.status_code == 201, role.text
    assigned = api.put(f"/api/users/{user_id}/roles", json={"role_ids": [role.json()["id"]]})
    assert assigned.status_code == 200, assigned.text


TWO_FROMS = (
    b"From: Anna <anna@example.com>\r\n"
    b"From: Someone <someone@example.org>\r\n"
    b"To: %s\r\n"
    b"Subject: Two senders\r\n"
    b"Message-ID: <two-froms@mail.example.com>\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


def item(api: httpx.Client, item_id: int) -> dict[str, Any]:
    response = api.get(f"/api/inbound/{item_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())
