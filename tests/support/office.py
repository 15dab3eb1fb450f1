"""The outside probe's office (issue 20): Alice and Carol in Sales, Bob in Support, each with a
client of their own token, and what they do there (deals, tasks, calls, archive addresses)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from tests.conftest import FakeClock
from tests.support.calllog import call, post_signed, source


@dataclass
class Office:
    admin: httpx.Client
    alice: httpx.Client
    bob: httpx.Client
    carol: httpx.Client
    ids: dict[str, int]
    emails: dict[str, str]
    clock: FakeClock

    def card(self, client: httpx.Client, owner: str, **fields: Any) -> dict[str, Any]:
        """A deal of `owner`'s, made by `client`; asserts it was made."""
        response = client.post(
            "/api/cards",
            json={
                "title": f"{owner}'s deal",
                "entity_type": "deal",
                "stage": "new",
                "responsible_id": self.ids[owner],
                **fields,
            },
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def task(self, client: httpx.Client, card_ids: list[int], responsible: str) -> httpx.Response:
        return client.post(
            "/api/activities",
            json={
                "card_ids": card_ids,
                "type": "task",
                "subject": "Send the offer",
                "responsible_id": self.ids[responsible],
                "deadline": (self.clock() + timedelta(days=2)).isoformat(),
            },
        )

    def phone_call(self, number: str, call_id: str, user: str) -> None:
        """A call from `number` taken by `user`, signed and posted to a new call-log source."""
        hook = source(self.admin)
        post_signed(self.admin, hook, call(number, call_id, self.emails[user]), self.clock)

    def archive_address(self, client: httpx.Client, card_id: int) -> str:
        """The card's archive address, made by `client`."""
        return str(client.post(f"/api/cards/{card_id}/archive-address").json()["address"])

    def due_day(self, client: httpx.Client, user: str) -> dict[str, Any]:
        """`user`'s calendar on the day `task` sets (two days ahead), as `client` sees it."""
        span = {"view": "day", "from": (self.clock() + timedelta(days=2)).date().isoformat()}
        calendar = client.get(
            "/api/calendar", params={"users": str(self.ids[user]), "timezone": "UTC", **span}
        )
        return dict(calendar.json())
