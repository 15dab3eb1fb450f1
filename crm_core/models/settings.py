"""Company-wide settings (counter mode, activity types and statuses)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.db import Base


class CompanySetting(Base):
    """Company-wide settings (counter mode, activity types and statuses), one JSON value each."""

    __tablename__ = "company_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
