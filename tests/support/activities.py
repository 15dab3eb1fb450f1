"""Activity helpers: the tests' start time, an activity made over the API, the top card of a
Kanban column, and one round of the sweeper's focus clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def activity(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    if isinstance(fields.get("deadline"), datetime):
        fields["deadline"] = fields["deadline"].isoformat()
    fields.setdefault("type", "call")
    fields.setdefault("subject", "Call John back")
    response = api.post("/api/activities", json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())
