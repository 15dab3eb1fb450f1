"""Calendars (seed 004): each user's activities by day, week or month, several users side
by side, and an iCalendar feed per user that calendar clients subscribe to. The only
module importing icalendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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


def window(
    view: str, first: date | None, last: date | None, timezone: str, now: datetime
) -> Window:
    """The day, the week (Monday to Sunday) or the month that contains `first` (default:
    today there), or the days from `first` to `last` included; InvalidInput for a time zone
    or dates that cannot be."""
    if view not in VIEWS:
        raise InvalidInput(f"view: one of {', '.join(VIEWS)}")
    try:
        zone = ZoneInfo(timezone)
    except (ValueError, KeyError, OSError) as exc:  # unknown, malformed, a directory...
        raise InvalidInput(f"timezone: unknown {timezone[:64]!r}") from exc
    day = first or now.astimezone(zone).date()
    try:
        if last is not None:
            if last < day:
                raise InvalidInput("to: must not be before from")
            begin, stop = day, last + timedelta(days=1)
        elif view == "day":
            begin, stop = day, day + timedelta(days=1)
        elif view == "week":
            begin = day - timedelta(days=day.weekday())
            stop = begin + timedelta(days=7)
        else:
            begin = day.replace(day=1)
            stop = (begin + timedelta(days=32)).replace(day=1)
        start = datetime.combine(begin, datetime.min.time(), zone)
        end = datetime.combine(stop, datetime.min.time(), zone)
        # Local midnights near the ends of the calendar may not exist in UTC: refuse them
        # here, not in the database.
        start.astimezone(UTC)
        end.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("from: too far in the past or the future") from None
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
    session: Session, user: User, visible: ColumnElement[bool], now: datetime, domain: str
) -> bytes:
    """The user's iCalendar feed (RFC 5545): every open activity with a deadline, and the
    closed ones of the last 90 days, at their deadline in the user's time zone (with its
    VTIMEZONE). UIDs are `activity-<id>@<domain>`, the same whatever host serves the feed."""
    zone = ZoneInfo(user.timezone)
    since = now - timedelta(days=FEED_PAST_DAYS)
    calendar = Calendar()
    calendar.add("prodid", "-//crm-ingest//activities//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", f"CRM: {user.name}")
    calendar.add("x-wr-timezone", user.timezone)
    calendar.add("refresh-interval", timedelta(minutes=15), parameters={"VALUE": "DURATION"})
    for activity in activities_of(session, user.id, None, None, visible):
        assert activity.deadline is not None
        if not activity.is_open and (activity.closed_at or activity.deadline) < since:
            continue
        start = activity.deadline.astimezone(zone)
        event = Event()
        event.add("uid", f"activity-{activity.id}@{domain}")
        event.add("dtstamp", now.astimezone(UTC))
        event.add("dtstart", start)
        event.add("dtend", start + timedelta(minutes=EVENT_MINUTES))
        event.add("summary", activity.subject or activity.type)
        event.add("description", activity.description)
        event.add("categories", [activity.type])
        cancelled = not activity.is_open and activity.success is False
        event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
        calendar.add_component(event)
    calendar.add_missing_timezones()
    return bytes(calendar.to_ical())
