"""Focus: which card sits at the top of its Kanban column, and why (seed 001).

A card is focused by moving its focus moment to now; every Kanban, list and activity
view orders by it, latest first, so the last card that needed attention leads.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select

from crm_core.models import Card

INCOMING_EMAIL = "incoming e-mail"


def focus_card(card: Card, reason: str, at: datetime) -> None:
    card.focus_at = at
    card.focus_reason = reason


def kanban_query(entity_type: str, stage: str | None, limit: int) -> Select[Card]:
    """Cards of one column (or all columns of a type), focused ones first, latest on top."""
    query = select(Card).where(Card.entity_type == entity_type)
    if stage is not None:
        query = query.where(Card.stage == stage)
    return query.order_by(Card.focus_at.is_(None), Card.focus_at.desc(), Card.id.desc()).limit(
        limit
    )
