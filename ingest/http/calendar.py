"""The calendar: several users' activities side by side (/api/calendar), and a user's
activities as an iCalendar feed for calendar clients (/calendar/{user_id}.ics, whose secret
token is the authentication)."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from crm_core import accounts, calendar, permissions, user_cases
from crm_core.permissions import Actor
from ingest.http.activities import activities_out
from ingest.http.deps import Ctx, Who
from ingest.http.schemas.calendar import CalendarOut, CalendarUserOut
from ingest.wire import TimeZone

router = APIRouter()


@router.get("/api/calendar")
def get_calendar(
    who: Who,
    users: Annotated[
        str, Query(pattern=r"^[0-9]{1,10}(,[0-9]{1,10}){0,19}$", description="ids, e.g. 1,2")
    ],
    ctx: Ctx,
    view: Annotated[str, Query(pattern="^(day|week|month)$")] = "week",
    start: Annotated[
        date | None,
        Query(alias="from", description="a day of the period (default: today)"),
    ] = None,
    end: Annotated[
        date | None,
        Query(alias="to", description="with `from`: the last day shown, instead of the view"),
    ] = None,
    timezone: Annotated[TimeZone | None, Query(description="default: the first user's")] = None,
) -> CalendarOut:
    """Several users' activities side by side, on the cards the actor may read: the day,
    week (Monday to Sunday) or month containing `from`, or `from` to `to`; times in
    `timezone` (the first user's by default)."""
    ids = [int(i) for i in users.split(",")]
    with ctx.reading() as session:
        people = [user_cases.get_user(session, i) for i in ids]
        span = calendar.window(view, start, end, timezone or people[0].timezone, ctx.clock())
        visible = permissions.visible_activities(session, who)
        shown = [
            CalendarUserOut(
                user_id=p.id,
                name=p.name,
                timezone=p.timezone,
                activities=activities_out(
                    session,
                    who,
                    calendar.activities_of(session, p.id, span.start, span.end, visible),
                ),
            )
            for p in people
        ]
    return CalendarOut(view=view, start=span.start, end=span.end, users=shown)


@router.get(
    "/calendar/{user_id}.ics",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}, 404: {"description": "no such feed"}},
)
def calendar_feed(request: Request, user_id: int, ctx: Ctx, token: str = "") -> Response:
    """A user's activities as an iCalendar feed (RFC 5545) for calendar clients; the
    secret `token` (from `POST /api/users/{id}/calendar-feed`) is the authentication."""
    with ctx.reading() as session:
        user = accounts.user_for_calendar(session, user_id, token)
        visible = permissions.visible_activities(session, Actor(user.id, admin=user.is_admin))
        body = calendar.feed(session, user, visible, ctx.clock(), ctx.settings.archive_domain)
    return Response(body, media_type="text/calendar; charset=utf-8")
