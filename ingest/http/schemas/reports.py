"""API shapes of the reports (`ingest.http.reports`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ReportRowOut(BaseModel):
    type: str
    status: str
    responsible_id: int
    responsible: str
    count: int


class ReportOut(BaseModel):
    since: datetime
    until: datetime
    rows: list[ReportRowOut]
