"""A cheap marker of what the web page shows (Kanban, counters, history): it differs
whenever an input lands, a card moves or counters change. Read about once a second by
`ingest.web.events`, so it uses only primary keys and small tables.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.models import (
    Activity,
    Card,
    CardUnread,
    HistoryEntry,
    InboundItem,
    InboundStatus,
    UserCounter,
)


def change_marker(session: Session) -> tuple[int, ...]:
    """One statement of scalar subqueries: new history entries (mails, calls, notes, closed
    tasks, status changes), new cards and activities, focus moves (time-driven focus writes
    no history), unread marks set or cleared, every counter change (each raises its user's
    `UserCounter.version` in the same transaction), and inputs arriving or leaving
    `received` (every status change but attach goes through it; the count is an index range
    of ix_inbound_items_status_enqueued, small: inputs in flight)."""
    row = session.execute(
        select(
            select(func.coalesce(func.max(HistoryEntry.id), 0)).scalar_subquery(),
            select(func.coalesce(func.max(Card.id), 0)).scalar_subquery(),
            select(func.coalesce(func.max(Card.focus_rank), 0)).scalar_subquery(),
            select(func.coalesce(func.max(Activity.id), 0)).scalar_subquery(),
            select(func.count()).select_from(CardUnread).scalar_subquery(),
            select(func.coalesce(func.sum(UserCounter.version), 0)).scalar_subquery(),
            select(func.coalesce(func.max(InboundItem.id), 0)).scalar_subquery(),
            select(func.count())
            .select_from(InboundItem)
            .where(InboundItem.status == InboundStatus.RECEIVED.value)
            .scalar_subquery(),
        )
    ).one()
    return tuple(int(value) for value in row)
