"""/api/users: the CRM's users, their personal API tokens, their calendar feed's URL and
their counters. Thin routes: check the actor's rights, run one use case in one transaction
(committed before the answer), serialise."""

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from crm_core import accounts, counters, permissions, user_cases
from crm_core.errors import Forbidden
from crm_core.permissions import Actor
from ingest.http.deps import Admin, Ctx, SelfOrAdmin, Who
from ingest.http.schemas.calendar import CalendarFeedOut
from ingest.http.schemas.users import (
    CountersOut,
    TeamCountersOut,
    TokenCreatedOut,
    TokenIn,
    TokenListOut,
    TokenOut,
    UserIn,
    UserListOut,
    UserOut,
    UserPatch,
)

router = APIRouter(prefix="/api")


@router.post("/users", status_code=201)
def create_user(body: UserIn, who: Admin, ctx: Ctx) -> UserOut:
    """A new user (administrators); without roles they may do everything with their
    own items."""
    with ctx.writing() as session:
        user = user_cases.create_user(session, str(body.email), body.name, body.timezone)
        return UserOut.model_validate(user)


@router.get("/users")
def list_users(who: Who, ctx: Ctx) -> UserListOut:
    """The CRM's users by name (any user: a card is handed to a colleague by name)."""
    with ctx.reading() as session:
        users = user_cases.list_users(session)
        return UserListOut(items=[UserOut.model_validate(u) for u in users])


@router.get("/users/{user_id}")
def get_user(user_id: int, who: Who, ctx: Ctx) -> UserOut:
    with ctx.reading() as session:
        return UserOut.model_validate(user_cases.get_user(session, user_id))


@router.patch("/users/{user_id}")
def edit_user(user_id: int, body: UserPatch, who: SelfOrAdmin, ctx: Ctx) -> UserOut:
    """Their N and time zone (the user or an administrator); their manager
    (administrators)."""
    if "manager_id" in body.model_fields_set:
        permissions.require_admin(who)
    with ctx.writing() as session:
        user = user_cases.edit_user(
            session,
            user_id,
            ctx.clock(),
            planned_lead_minutes=body.planned_lead_minutes,
            timezone=body.timezone,
            manager_id=body.manager_id,
            clear_manager="manager_id" in body.model_fields_set and body.manager_id is None,
        )
        return UserOut.model_validate(user)


@router.post("/users/{user_id}/tokens", status_code=201)
def issue_token(
    user_id: int,
    body: TokenIn,
    who: SelfOrAdmin,
    ctx: Ctx,
) -> TokenCreatedOut:
    """A personal API token: every request with it acts as the user. Shown only here."""
    with ctx.writing() as session:
        row, token = accounts.issue_token(session, user_id, body.name, ctx.clock())
        return TokenCreatedOut(
            id=row.id, name=row.name, created_at=row.created_at, revoked_at=None, token=token
        )


@router.get("/users/{user_id}/tokens")
def list_tokens(user_id: int, who: SelfOrAdmin, ctx: Ctx) -> TokenListOut:
    with ctx.reading() as session:
        found = accounts.list_tokens(session, user_id)
        return TokenListOut(items=[TokenOut.model_validate(t) for t in found])


@router.delete("/users/{user_id}/tokens/{token_id}", status_code=204)
def revoke_token(user_id: int, token_id: int, who: SelfOrAdmin, ctx: Ctx) -> Response:
    with ctx.writing() as session:
        accounts.revoke_token(session, user_id, token_id, ctx.clock())
    return Response(status_code=204)


@router.post("/users/{user_id}/calendar-feed", status_code=201)
def calendar_feed(user_id: int, request: Request, who: SelfOrAdmin, ctx: Ctx) -> CalendarFeedOut:
    """A new secret URL of the user's iCalendar feed (the previous one stops working)."""
    with ctx.writing() as session:
        token = accounts.issue_calendar_token(session, user_id)
    base = str(request.base_url).rstrip("/")
    return CalendarFeedOut(url=f"{base}/calendar/{user_id}.ics?token={token}")


@router.get("/users/{user_id}/counters")
def get_counters(user_id: int, who: Who, ctx: Ctx) -> CountersOut:
    """Incoming, Planned, For today and the employees' counters, in the company's mode:
    the user's own, or an employee's for their managers."""
    with ctx.reading() as session:
        if not who.admin and who.user_id != user_id and user_id not in _team(session, who):
            raise Forbidden("only the user, their managers or an administrator")
        found = user_cases.user_counters(session, user_id, ctx.clock())
    return CountersOut(
        incoming=found.incoming,
        planned=found.planned,
        today=found.today,
        employees=TeamCountersOut(
            incoming=found.employees.incoming, planned=found.employees.planned
        ),
    )


def _team(session: Session, who: Actor) -> list[int]:
    """Everyone below the actor in the manager hierarchy."""
    return counters.subordinates(session, who.user_id) if who.user_id is not None else []
