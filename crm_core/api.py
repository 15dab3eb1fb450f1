"""The CRM core's JSON API routes (users and their access, cards, history, documents,
Kanban, counters, activities, comments, settings, calendar, reports). Thin: check the
actor's rights (`permissions`), validate with `schemas`, run one use case in one
transaction (committed before the answer), serialise. Mounted by `ingest.http_app`.
"""

import csv
import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_core import (
    accounts,
    activities,
    calendar,
    company,
    counters,
    history,
    permissions,
    reports,
    schemas,
    services,
    unread,
)
from crm_core.activities import ActivityFields, ActivityFilter
from crm_core.db import read_only, unit_of_work
from crm_core.errors import Forbidden, InvalidInput
from crm_core.models import Activity, Card
from crm_core.permissions import Actor

Clock = Callable[[], datetime]
# Who the request acts as, from its bearer token (given by `ingest.http_app`).
ActorDependency = Callable[..., Actor]


def make_router(
    sessions: sessionmaker[Session],
    *,
    default_region: str,
    clock: Clock,
    actor: ActorDependency,
) -> APIRouter:
    router = APIRouter(prefix="/api")
    Who = Annotated[Actor, Depends(actor)]

    # Checked as dependencies, before the body is read: a caller without the right learns
    # nothing of what a valid request would look like.
    def administrator(who: Who) -> Actor:
        permissions.require_admin(who)
        return who

    def self_or_admin(user_id: int, who: Who) -> Actor:
        permissions.require_self_or_admin(who, user_id)
        return who

    Admin = Annotated[Actor, Depends(administrator)]
    SelfOrAdmin = Annotated[Actor, Depends(self_or_admin)]

    # Each route opens its transaction itself and commits before answering: a client that
    # got 201 can read what it created (a yield-dependency would commit after the response).
    def writing() -> AbstractContextManager[Session]:
        return unit_of_work(sessions)

    def reading() -> AbstractContextManager[Session]:
        return read_only(sessions)

    # --- users and their access ---------------------------------------------------------

    @router.post("/users", status_code=201)
    def create_user(body: schemas.UserIn, who: Admin) -> schemas.UserOut:
        """A new user (administrators); without roles they may do everything with their
        own items."""
        with writing() as session:
            user = services.create_user(session, str(body.email), body.name, body.timezone)
            return schemas.UserOut.model_validate(user)

    @router.get("/users")
    def list_users(who: Who) -> schemas.UserListOut:
        """The CRM's users by name (any user: a card is handed to a colleague by name)."""
        with reading() as session:
            users = services.list_users(session)
            return schemas.UserListOut(items=[schemas.UserOut.model_validate(u) for u in users])

    @router.get("/users/{user_id}")
    def get_user(user_id: int, who: Who) -> schemas.UserOut:
        with reading() as session:
            return schemas.UserOut.model_validate(services.get_user(session, user_id))

    @router.patch("/users/{user_id}")
    def edit_user(user_id: int, body: schemas.UserPatch, who: SelfOrAdmin) -> schemas.UserOut:
        """Their N and time zone (the user or an administrator); their manager
        (administrators)."""
        if "manager_id" in body.model_fields_set:
            permissions.require_admin(who)
        with writing() as session:
            user = services.edit_user(
                session,
                user_id,
                clock(),
                planned_lead_minutes=body.planned_lead_minutes,
                timezone=body.timezone,
                manager_id=body.manager_id,
                clear_manager="manager_id" in body.model_fields_set and body.manager_id is None,
            )
            return schemas.UserOut.model_validate(user)

    @router.patch("/users/{user_id}/access")
    def edit_access(user_id: int, body: schemas.UserAccessPatch, who: Admin) -> schemas.UserOut:
        """Department and administrator flag (administrators)."""
        with writing() as session:
            user = accounts.place_user(
                session,
                user_id,
                department_id=body.department_id,
                clear_department="department_id" in body.model_fields_set
                and body.department_id is None,
                is_admin=body.is_admin,
            )
            return schemas.UserOut.model_validate(user)

    @router.get("/users/{user_id}/roles")
    def get_roles(user_id: int, who: SelfOrAdmin) -> schemas.UserRolesOut:
        with reading() as session:
            services.get_user(session, user_id)
            return schemas.UserRolesOut(role_ids=accounts.role_ids(session, user_id))

    @router.put("/users/{user_id}/roles")
    def set_roles(user_id: int, body: schemas.UserRolesIn, who: Admin) -> schemas.UserRolesOut:
        """The user's roles, replaced (administrators); none: the default (all own)."""
        with writing() as session:
            return schemas.UserRolesOut(
                role_ids=accounts.set_roles(session, user_id, body.role_ids)
            )

    @router.post("/users/{user_id}/tokens", status_code=201)
    def issue_token(
        user_id: int, body: schemas.TokenIn, who: SelfOrAdmin
    ) -> schemas.TokenCreatedOut:
        """A personal API token: every request with it acts as the user. Shown only here."""
        with writing() as session:
            row, token = accounts.issue_token(session, user_id, body.name, clock())
            return schemas.TokenCreatedOut(
                id=row.id, name=row.name, created_at=row.created_at, revoked_at=None, token=token
            )

    @router.get("/users/{user_id}/tokens")
    def list_tokens(user_id: int, who: SelfOrAdmin) -> schemas.TokenListOut:
        with reading() as session:
            found = accounts.list_tokens(session, user_id)
            return schemas.TokenListOut(items=[schemas.TokenOut.model_validate(t) for t in found])

    @router.delete("/users/{user_id}/tokens/{token_id}", status_code=204)
    def revoke_token(user_id: int, token_id: int, who: SelfOrAdmin) -> Response:
        with writing() as session:
            accounts.revoke_token(session, user_id, token_id, clock())
        return Response(status_code=204)

    @router.post("/users/{user_id}/calendar-feed", status_code=201)
    def calendar_feed(user_id: int, request: Request, who: SelfOrAdmin) -> schemas.CalendarFeedOut:
        """A new secret URL of the user's iCalendar feed (the previous one stops working)."""
        with writing() as session:
            token = accounts.issue_calendar_token(session, user_id)
        base = str(request.base_url).rstrip("/")
        return schemas.CalendarFeedOut(url=f"{base}/calendar/{user_id}.ics?token={token}")

    @router.get("/users/{user_id}/counters")
    def get_counters(user_id: int, who: Who) -> schemas.CountersOut:
        """Incoming, Planned, For today and the employees' counters, in the company's mode:
        the user's own, or an employee's for their managers."""
        with reading() as session:
            if not who.admin and who.user_id != user_id and user_id not in _team(session, who):
                raise Forbidden("only the user, their managers or an administrator")
            found = services.user_counters(session, user_id, clock())
        return schemas.CountersOut(
            incoming=found.incoming,
            planned=found.planned,
            today=found.today,
            employees=schemas.TeamCountersOut(
                incoming=found.employees.incoming, planned=found.employees.planned
            ),
        )

    @router.post("/roles", status_code=201)
    def create_role(body: schemas.RoleIn, who: Admin) -> schemas.RoleOut:
        with writing() as session:
            grants = body.model_dump(mode="json")["permissions"]
            return schemas.RoleOut.model_validate(accounts.create_role(session, body.name, grants))

    @router.get("/roles")
    def list_roles(who: Admin) -> schemas.RoleListOut:
        with reading() as session:
            return schemas.RoleListOut(
                items=[schemas.RoleOut.model_validate(r) for r in accounts.list_roles(session)]
            )

    @router.patch("/roles/{role_id}")
    def edit_role(role_id: int, body: schemas.RolePatch, who: Admin) -> schemas.RoleOut:
        with writing() as session:
            grants = body.model_dump(mode="json")["permissions"]
            return schemas.RoleOut.model_validate(accounts.edit_role(session, role_id, grants))

    @router.post("/departments", status_code=201)
    def create_department(body: schemas.DepartmentIn, who: Admin) -> schemas.DepartmentOut:
        with writing() as session:
            department = accounts.create_department(session, body.name, body.head_id)
            return schemas.DepartmentOut.model_validate(department)

    @router.get("/departments")
    def list_departments(who: Who) -> schemas.DepartmentListOut:
        with reading() as session:
            found = accounts.list_departments(session)
            return schemas.DepartmentListOut(
                items=[schemas.DepartmentOut.model_validate(d) for d in found]
            )

    # --- cards --------------------------------------------------------------------------

    @router.post("/cards", status_code=201)
    def create_card(body: schemas.CardIn, who: Who) -> schemas.CardOut:
        with writing() as session:
            permissions.check_add(session, who, body.entity_type, body.responsible_id)
            card = services.create_card(
                session,
                title=body.title,
                entity_type=body.entity_type,
                stage=body.stage,
                responsible_id=body.responsible_id,
                contact_emails=[str(e) for e in body.contact_emails],
                contact_phones=body.contact_phones,
                default_region=default_region,
                actor=who,  # an existing contact only as `permissions.check_contact` allows
            )
            return schemas.CardOut.of(card, unread=False)

    @router.get("/cards/{card_id}")
    def get_card(card_id: int, who: Who) -> schemas.CardOut:
        """The card; opened by its responsible, it is no longer unread for them."""
        with reading() as session:
            card = permissions.card_for(session, who, card_id)
            viewer = who.user_id if who.user_id is not None else card.responsible_id
            since = unread.unread_since(session, card.id, viewer)
            shown = schemas.CardOut.of(card, since is not None)
            shown.unread_since = since
        if shown.unread and who.user_id == shown.responsible_id:
            with writing() as session:
                unread.mark_read(session, card_id, who.user_id)
            shown.unread = False  # the responsible is looking at it now
        return shown

    @router.patch("/cards/{card_id}")
    def edit_card(card_id: int, body: schemas.CardPatch, who: Who) -> schemas.CardOut:
        """Edit; each change of stage or field is recorded in the card's history."""
        with writing() as session:
            card = permissions.card_for(session, who, card_id, "edit", lock=True)
            if body.responsible_id is not None and body.responsible_id != card.responsible_id:
                # Handing a card over is adding it for the new responsible.
                permissions.check_add(session, who, card.entity_type, body.responsible_id)
            before = {f: getattr(card, f) for f in ("title", "stage", "responsible_id", "outcome")}
            card = services.edit_card(
                session,
                card_id,
                clock(),
                title=body.title,
                stage=body.stage,
                responsible_id=body.responsible_id,
                outcome=body.outcome if body.outcome != "open" else None,
                reopen=body.outcome == "open",
            )
            history.record_changes(session, card, before, who.user_id, clock())
            return schemas.CardOut.of(card, unread.is_unread(session, card.id, card.responsible_id))

    @router.delete("/cards/{card_id}", status_code=204)
    def delete_card(card_id: int, who: Who) -> Response:
        """Delete the card with its history, activities and documents."""
        with writing() as session:
            card = permissions.card_for(session, who, card_id, "delete", lock=True)
            services.delete_card(session, card, clock())
        return Response(status_code=204)

    @router.post("/cards/{card_id}/read", status_code=204)
    def mark_read(card_id: int, who: Who) -> Response:
        with writing() as session:
            card = permissions.card_for(session, who, card_id)
            unread.mark_read(session, card.id, who.user_id or card.responsible_id)
        return Response(status_code=204)

    @router.post("/cards/{card_id}/unread", status_code=204)
    def mark_unread(card_id: int, who: Who) -> Response:
        with writing() as session:
            card = permissions.card_for(session, who, card_id)
            unread.mark_unread(session, card.id, who.user_id or card.responsible_id, clock())
        return Response(status_code=204)

    @router.get("/cards/{card_id}/history")
    def card_history(
        card_id: int,
        who: Who,
        type: Annotated[
            list[Annotated[str, Field(pattern=f"^({'|'.join(history.FILTERS)})$")]] | None,
            Query(description=f"filter, repeatable: {', '.join(history.FILTERS)}"),
        ] = None,
        since: schemas.Instant | None = None,
        until: schemas.Instant | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> schemas.HistoryOut:
        """Newest first; filtered by type (closed tasks, e-mail, WhatsApp, SMS, chat, calls,
        status changes, field changes, documents, notes) and period."""
        if any(moment is not None and moment.tzinfo is None for moment in (since, until)):
            raise InvalidInput("since and until need their UTC offset")
        with reading() as session:
            permissions.card_for(session, who, card_id)
            entries = history.card_history(session, card_id, type or [], since, until, limit)
            return schemas.HistoryOut(items=[schemas.HistoryItemOut.of(e) for e in entries])

    @router.post("/cards/{card_id}/notes", status_code=201)
    def add_note(card_id: int, body: schemas.NoteIn, who: Who) -> dict[str, object]:
        """A "new history" entry: something done with the customer, without a task."""
        with writing() as session:
            card = permissions.card_for(session, who, card_id, "edit")
            return schemas.HistoryItemOut.of(
                history.add_note(session, card, body.text, who.user_id, clock())
            )

    @router.get("/cards/{card_id}/documents")
    def list_documents(card_id: int, who: Who) -> schemas.DocumentListOut:
        """The card's files (inline images of mails are not listed)."""
        with reading() as session:
            permissions.card_for(session, who, card_id)
            found = services.list_documents(session, card_id)
            return schemas.DocumentListOut(
                items=[schemas.DocumentOut.model_validate(d) for d in found]
            )

    @router.post("/cards/{card_id}/documents", status_code=201)
    def upload_document(
        card_id: int,
        who: Who,
        name: Annotated[
            str,
            Query(min_length=1, max_length=255, pattern=schemas.NOT_BLANK, description="file name"),
        ],
        content: Annotated[bytes, Body(media_type="application/octet-stream", min_length=1)],
        request: Request,
    ) -> schemas.DocumentOut:
        """Upload a file to the card (the body is the file; its Content-Type its type)."""
        media_type = request.headers.get("content-type", "application/octet-stream")
        with writing() as session:
            card = permissions.card_for(session, who, card_id, "edit")
            document = history.upload_document(
                session, card, name, media_type, content, who.user_id, clock()
            )
            return schemas.DocumentOut.model_validate(document)

    @router.get("/documents/{document_id}/content", response_class=Response)
    def document_content(document_id: int, who: Who) -> Response:
        with reading() as session:
            history.readable_document(session, who, document_id)
            document, content = services.document_content(session, document_id)
        # RFC 6266/5987: the file's own name, whatever its script.
        disposition = f"attachment; filename*=UTF-8''{quote(document.file_name)}"
        return Response(
            content,
            media_type=history.served_media_type(document.media_type),
            headers={"Content-Disposition": disposition},
        )

    @router.delete("/documents/{document_id}", status_code=204)
    def delete_document(document_id: int, who: Who) -> Response:
        """Delete it for good, as the history settings allow; history records who and when."""
        with writing() as session:
            history.delete_document(session, who, document_id, clock())
        return Response(status_code=204)

    @router.post("/cards/{card_id}/comments", status_code=201)
    def add_comment(card_id: int, body: schemas.CommentIn, who: Who) -> schemas.CommentOut:
        author = _author(body, who)
        with writing() as session:
            permissions.card_for(session, who, card_id, "edit")
            if body.activity_id is not None:
                found = activities.get_activity(session, body.activity_id)
                permissions.activity_for(session, who, found, "edit")
            comment = activities.add_comment(
                session, card_id, author, body.text, clock(), activity_id=body.activity_id
            )
            return schemas.CommentOut.model_validate(comment)

    @router.get("/cards/{card_id}/comments")
    def list_comments(card_id: int, who: Who) -> schemas.CommentListOut:
        with reading() as session:
            permissions.card_for(session, who, card_id)
            comments = activities.list_comments(session, card_id)
            return schemas.CommentListOut(
                items=[schemas.CommentOut.model_validate(c) for c in comments]
            )

    @router.get("/kanban")
    def kanban(
        who: Who,
        entity_type: schemas.EntityTypeName = "deal",
        stage: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> schemas.KanbanOut:
        """One column's cards the actor may read, latest focus first, each with why it is on
        top."""
        with reading() as session:
            cards = services.kanban(
                session, entity_type, stage, limit, permissions.readable(session, who)
            )
        return schemas.KanbanOut(
            cards=[schemas.KanbanCardOut.model_validate(c, from_attributes=True) for c in cards]
        )

    # --- activities ---------------------------------------------------------------------

    @router.post("/activities", status_code=201)
    def create_activity(body: schemas.ActivityIn, who: Who) -> schemas.ActivityOut:
        """An activity on one or several cards; needs the right to edit each of them, to
        hand it to its responsible (as a card: the add level) and to see its contacts."""
        with writing() as session:
            cards = [permissions.card_for(session, who, i, "edit") for i in body.all_card_ids()]
            permissions.check_hand_over(session, who, cards, body.responsible_id)
            _check_contacts(session, who, body.contact_ids, [])
            activity = activities.create_activity(
                session,
                ActivityFields(
                    card_ids=body.all_card_ids(),
                    type=body.type,
                    subject=body.subject,
                    description=body.description,
                    responsible_id=body.responsible_id,
                    deadline=body.deadline,
                    status=body.status,
                    user_ids=body.user_ids,
                    contact_ids=body.contact_ids,
                ),
                clock(),
            )
            [shown] = _shown(session, who, [activity])
            return shown

    @router.get("/activities")
    def list_activities(
        who: Who,
        responsible_id: schemas.DbId | None = None,
        status: str | None = None,
        type: str | None = None,
        card_id: schemas.DbId | None = None,
        is_open: bool | None = None,
        deadline_from: schemas.Instant | None = None,
        deadline_to: schemas.Instant | None = None,
        subordinates_of: Annotated[
            schemas.DbId | None, Query(description="open activities of this user's subordinates")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> schemas.ActivityListOut:
        """Filtered activities on cards the actor may read, ordered like the Kanban (focus),
        then by deadline."""
        with reading() as session:
            found = activities.list_activities(
                session,
                ActivityFilter(
                    responsible_id=responsible_id,
                    status=status,
                    type=type,
                    card_id=card_id,
                    is_open=is_open,
                    deadline_from=deadline_from,
                    deadline_to=deadline_to,
                    subordinates_of=subordinates_of,
                    limit=limit,
                    visible=permissions.visible_activities(session, who),
                ),
            )
            return schemas.ActivityListOut(items=_shown(session, who, found))

    def activity(session: Session, who: Actor, activity_id: int, action: str) -> Activity:
        found = activities.get_activity(session, activity_id, lock=action != "read")
        return permissions.activity_for(session, who, found, action)

    @router.get("/activities/{activity_id:int}")
    def get_activity(activity_id: int, who: Who) -> schemas.ActivityOut:
        with reading() as session:
            [shown] = _shown(session, who, [activity(session, who, activity_id, "read")])
            return shown

    @router.patch("/activities/{activity_id:int}")
    def edit_activity(
        activity_id: int, body: schemas.ActivityPatch, who: Who
    ) -> schemas.ActivityOut:
        with writing() as session:
            found = activity(session, who, activity_id, "edit")
            cards = [permissions.card_for(session, who, i, "edit") for i in body.card_ids or []]
            _check_change(session, who, found, _fields(body), cards)
            if history.reopens(session, found, body.status):
                history.check_reopen(session, who, found)
            edited = activities.edit_activity(session, found, _fields(body), who.user_id, clock())
            [shown] = _shown(session, who, [edited])
            return shown

    @router.delete("/activities/{activity_id:int}", status_code=204)
    def delete_activity(activity_id: int, who: Who) -> Response:
        with writing() as session:
            activities.delete_activity(
                session, activity(session, who, activity_id, "edit"), clock()
            )
        return Response(status_code=204)

    @router.post("/activities/{activity_id:int}/close")
    def close_activity(activity_id: int, body: schemas.CloseIn, who: Who) -> schemas.ActivityOut:
        """Complete it (who may edit its cards, or its responsible); each of its cards'
        history gets a "task_closed" entry."""
        with writing() as session:
            closed = activities.close_activity(
                session,
                activity(session, who, activity_id, "close"),
                body.status,
                body.success,
                who.user_id,
                clock(),
            )
            [shown] = _shown(session, who, [closed])
            return shown

    @router.post("/activities/{activity_id:int}/reopen")
    def reopen_activity(activity_id: int, who: Who) -> schemas.ActivityOut:
        """Back to the open activities, as the history settings allow; recorded in history."""
        with writing() as session:
            found = activity(session, who, activity_id, "edit")
            history.check_reopen(session, who, found)
            reopened = activities.reopen_activity(session, found, who.user_id, clock())
            [shown] = _shown(session, who, [reopened])
            return shown

    @router.post("/activities/{activity_id:int}/comments", status_code=201)
    def comment_activity(activity_id: int, body: schemas.CommentIn, who: Who) -> schemas.CommentOut:
        author = _author(body, who)
        with writing() as session:
            found = activity(session, who, activity_id, "edit")
            comment = activities.add_comment(
                session, found.card_id, author, body.text, clock(), activity_id=found.id
            )
            return schemas.CommentOut.model_validate(comment)

    @router.post("/activities/bulk")
    def bulk(body: schemas.BulkIn, who: Who) -> schemas.BulkOut:
        """One action on many activities, all or nothing: every id is checked (404 for one
        the actor may not read, 403 for one they may not edit, or not close for `done`, or
        not hand to the new responsible) before anything changes."""
        fields = _fields(body.changes) if body.changes else ActivityFields()
        fields.responsible_id = body.responsible_id or fields.responsible_id
        fields.status = body.status or fields.status
        # Only these two change the responsible or the contacts (activities.bulk).
        changes = fields if body.action in ("assign", "edit") else ActivityFields()
        if body.action == "assign":
            changes = ActivityFields(responsible_id=fields.responsible_id)
        with writing() as session:
            cards = [permissions.card_for(session, who, i, "edit") for i in changes.card_ids or []]
            for activity_id in sorted(set(body.ids)):
                found = activity(session, who, activity_id, _BULK_NEEDS.get(body.action, "edit"))
                if body.action == "not_done" or history.reopens(session, found, fields.status):
                    history.check_reopen(session, who, found)
                _check_change(session, who, found, changes, cards)
            changed = activities.bulk(session, body.ids, body.action, fields, who.user_id, clock())
        return schemas.BulkOut(changed=changed)

    # --- calendar and reports -----------------------------------------------------------

    @router.get("/calendar")
    def get_calendar(
        who: Who,
        users: Annotated[
            str, Query(pattern=r"^[0-9]{1,10}(,[0-9]{1,10}){0,19}$", description="ids, e.g. 1,2")
        ],
        view: Annotated[str, Query(pattern="^(day|week|month)$")] = "week",
        start: Annotated[
            date | None,
            Query(alias="from", description="a day of the period (default: today)"),
        ] = None,
        end: Annotated[
            date | None,
            Query(alias="to", description="with `from`: the last day shown, instead of the view"),
        ] = None,
        timezone: Annotated[
            schemas.TimeZone | None, Query(description="default: the first user's")
        ] = None,
    ) -> schemas.CalendarOut:
        """Several users' activities side by side, on the cards the actor may read: the day,
        week (Monday to Sunday) or month containing `from`, or `from` to `to`; times in
        `timezone` (the first user's by default)."""
        ids = [int(i) for i in users.split(",")]
        with reading() as session:
            people = [services.get_user(session, i) for i in ids]
            span = calendar.window(view, start, end, timezone or people[0].timezone, clock())
            visible = permissions.visible_activities(session, who)
            shown = [
                schemas.CalendarUserOut(
                    user_id=p.id,
                    name=p.name,
                    timezone=p.timezone,
                    activities=_shown(
                        session,
                        who,
                        calendar.activities_of(session, p.id, span.start, span.end, visible),
                    ),
                )
                for p in people
            ]
        return schemas.CalendarOut(view=view, start=span.start, end=span.end, users=shown)

    @router.get(
        "/reports/activities",
        response_model=None,
        responses={
            200: {
                "model": schemas.ReportOut,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        },
    )
    def activity_report(
        who: Who,
        since: schemas.Instant,
        until: schemas.Instant,
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    ) -> schemas.ReportOut | Response:
        """Activities created in the period by type, status and responsible (JSON or CSV)."""
        if since.tzinfo is None or until.tzinfo is None:
            raise InvalidInput("since and until need their UTC offset")
        with reading() as session:
            rows = reports.activity_counts(
                session, since, until, permissions.visible_activities(session, who)
            )
        if format == "json":
            return schemas.ReportOut(
                since=since,
                until=until,
                rows=[schemas.ReportRowOut.model_validate(r, from_attributes=True) for r in rows],
            )
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["type", "status", "responsible_id", "responsible", "count"])
        for r in rows:
            writer.writerow([r.type, r.status, r.responsible_id, r.responsible, r.count])
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="activities.csv"'},
        )

    # --- company settings ---------------------------------------------------------------

    @router.get("/settings")
    def get_settings(who: Who) -> schemas.SettingsOut:
        with reading() as session:
            return schemas.SettingsOut.model_validate(company.all_settings(session))

    @router.patch("/settings")
    def edit_settings(body: schemas.SettingsPatch, who: Admin) -> schemas.SettingsOut:
        """`counter_mode` switches every counter at once (both modes are always maintained);
        `reopen_tasks` and `delete_documents` are the history settings (administrators)."""
        with writing() as session:
            for key, value in body.model_dump(exclude_none=True).items():
                company.put(session, key, value)
            return schemas.SettingsOut.model_validate(company.all_settings(session))

    return router


def _shown(session: Session, who: Actor, found: list[Activity]) -> list[schemas.ActivityOut]:
    """Activities as the actor may see them, wherever one is output: it names its cards
    (`card_ids`, and its main card `card_id`, else null) only when they may read them (ids
    are not confirmed); its responsible may see one on cards they may not read."""
    out = [schemas.ActivityOut.of(a) for a in found]
    if who.admin:
        return out
    ids = {card_id for a in out for card_id in [*a.card_ids, a.card_id] if card_id is not None}
    readable = set(
        session.scalars(select(Card.id).where(Card.id.in_(ids), permissions.readable(session, who)))
    )
    for a in out:
        a.card_ids = [card_id for card_id in a.card_ids if card_id in readable]
        if a.card_id not in readable:
            a.card_id = None
    return out


# What each bulk action needs on every activity it is given (others: edit).
_BULK_NEEDS = {"done": "close"}


def _check_change(
    session: Session, who: Actor, found: Activity, fields: ActivityFields, cards: list[Card]
) -> None:
    """An edit of an activity (single or bulk) onto `cards` (its new cards, which the actor
    may edit; none: it stays on its own): the right to hand it to a new responsible, and to
    see the contacts it adds."""
    if fields.responsible_id is not None and fields.responsible_id != found.responsible_id:
        permissions.check_hand_over(session, who, cards or list(found.cards), fields.responsible_id)
    if fields.contact_ids is not None:
        _check_contacts(session, who, fields.contact_ids, [c.id for c in found.contacts])


def _check_contacts(session: Session, who: Actor, ids: list[int], linked: list[int]) -> None:
    """Contacts an activity newly names follow the contact rule (`check_contact`)."""
    for contact_id in dict.fromkeys(ids):
        if contact_id not in linked:
            permissions.check_contact(session, who, contact_id, str(contact_id))


def _team(session: Session, who: Actor) -> list[int]:
    """Everyone below the actor in the manager hierarchy."""
    return counters.subordinates(session, who.user_id) if who.user_id is not None else []


def _author(body: schemas.CommentIn, who: Actor) -> int:
    """The comment's author: the actor (an administrator may write for someone else)."""
    author = body.author_id if body.author_id is not None else who.user_id
    if author is None:
        raise InvalidInput("a comment needs author_id (or X-Acting-User)")
    if author != who.user_id and not who.admin:
        raise Forbidden("you may only comment as yourself")
    return author


def _fields(patch: schemas.ActivityPatch) -> ActivityFields:
    return ActivityFields(
        card_ids=patch.card_ids,
        type=patch.type,
        subject=patch.subject,
        description=patch.description,
        responsible_id=patch.responsible_id,
        deadline=patch.deadline,
        clear_deadline="deadline" in patch.model_fields_set and patch.deadline is None,
        status=patch.status,
        user_ids=patch.user_ids,
        contact_ids=patch.contact_ids,
    )
