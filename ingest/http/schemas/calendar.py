"""API shapes of the calendar: several users' activities side by side, and a user's
iCalendar feed URL (`ingest.http.calendar`, `ingest.http.users`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ingest.http.schemas.activities import ActivityOut


class CalendarFeedOut(BaseModel):
    url: str = Field(description="the feed to subscribe to; its secret is shown only here")


class CalendarUserOut(BaseModel):
    user_id: int
    name: str
    timezone: str
    activities: list[ActivityOut]


class CalendarOut(BaseModel):
    view: str
    start: datetime
    end: datetime
    users: list[CalendarUserOut]
