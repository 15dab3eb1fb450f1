"""Calendars (seed 004): each user's activities by day, week or month, several users side
by side, and an iCalendar feed per user that calendar clients subscribe to. The only
module importing icalendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from crm_core.errors import InvalidInput
from crm_core.models import Activity, ActivityUser, Card, User

VIEWS = ("day", "week", "month")
EVENT_MINUTES = 30  # an activity has a deadline, not a length: shown as half an hour
FEED_PAST_DAYS = 90  # closed activities older than this leave the feed


@dataclass(frozen=True)
class Window:
    view: str
    start: datetime  # aware, local midnight in `timezone`
    end: datetime
    timezone: str


def window(view: str, day: date, timezone: str) -> Window:
    """The day, the week (Monday to Sunday) or the month that contains `day`."""
    if view not in VIEWS:
        raise InvalidInput(f"view: one of {', '.join(VIEWS)}")
    zone = ZoneInfo(timezone)
    if view == "day":
        first, last = day, day + timedelta(days=1)
    elif view == "week":
        first = day - timedelta(days=day.weekday())
        last = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1)
    start = datetime.combine(first, datetime.min.time(), zone)
    end = datetime.combine(last, datetime.min.time(), zone)
    return Window(view, start, end, timezone)


def activities_of(
    session: Session,
    user_id: int,
    since: datetime | None,
    until: datetime | None,
    visible: ColumnElement[bool],
) -> list[Activity]:
    """The user's activities (responsible or additional user) with a deadline in the
    period, on cards `visible` lets through, by deadline."""
    query = (
        select(Activity)
        .join(Card, Card.id == Activity.card_id)
        .where(
            Activity.deadline.is_not(None),
            or_(
                Activity.responsible_id == user_id,
                Activity.id.in_(
                    select(ActivityUser.activity_id).where(ActivityUser.user_id == user_id)
                ),
            ),
            visible,
        )
        .order_by(Activity.deadline, Activity.id)
    )
    if since is not None:
        query = query.where(Activity.deadline >= since)
    if until is not None:
        query = query.where(Activity.deadline < until)
    return list(session.scalars(query))


def feed(
    session: Session, user: User, visible: ColumnElement[bool], now: datetime, host: str
) -> bytes:
    """The user's iCalendar feed (RFC 5545): open activities and those closed in the last
    90 days, at their deadline in the user's time zone (with its VTIMEZONE)."""
    zone = ZoneInfo(user.timezone)
    calendar = Calendar()
    calendar.add("prodid", "-//crm-ingest//activities//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", f"CRM: {user.name}")
    calendar.add("x-wr-timezone", user.timezone)
    calendar.add("refresh-interval", timedelta(minutes=15), parameters={"VALUE": "DURATION"})
    for activity in activities_of(
        session, user.id, now - timedelta(days=FEED_PAST_DAYS), None, visible
    ):
        if (
            not activity.is_open
            and activity.closed_at
            and activity.closed_at < now - timedelta(days=FEED_PAST_DAYS)
        ):
            continue
        assert activity.deadline is not None
        start = activity.deadline.astimezone(zone)
        event = Event()
        event.add("uid", f"activity-{activity.id}@{host}")
        event.add("dtstamp", now)
        event.add("dtstart", start)
        event.add("dtend", start + timedelta(minutes=EVENT_MINUTES))
        event.add("summary", activity.subject or activity.type)
        event.add("description", activity.description)
        event.add("categories", [activity.type])
        event.add("status", "CONFIRMED" if activity.is_open or activity.success else "CANCELLED")
        if activity.closed_at is not None:
            event.add("completed", activity.closed_at)
        calendar.add_component(event)
    calendar.add_missing_timezones()
    return bytes(calendar.to_ical())
