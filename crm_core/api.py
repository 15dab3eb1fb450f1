"""The CRM core's JSON API routes (users, cards, history, Kanban, counters, activities,
comments, settings). Thin: validate with `schemas`, run one use case in one transaction
(committed before the answer), serialise. Mounted by `ingest.http_app`.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy.orm import Session, sessionmaker

from crm_core import activities, company, schemas, services, unread
from crm_core.activities import ActivityFields, ActivityFilter
from crm_core.db import read_only, unit_of_work
from crm_core.errors import InvalidInput

Clock = Callable[[], datetime]

# Who is acting (the admin token acting for a user); per-user tokens will set it instead.
ActingUser = Annotated[
    int | None,
    Header(alias="X-Acting-User", description="id of the user the request acts for"),
]


def make_router(sessions: sessionmaker[Session], *, default_region: str, clock: Clock) -> APIRouter:
    router = APIRouter(prefix="/api")

    # Each route opens its transaction itself and commits before answering: a client that
    # got 201 can read what it created (a yield-dependency would commit after the response).
    def writing() -> AbstractContextManager[Session]:
        return unit_of_work(sessions)

    def reading() -> AbstractContextManager[Session]:
        return read_only(sessions)

    # --- users --------------------------------------------------------------------------

    @router.post("/users", status_code=201)
    def create_user(body: schemas.UserIn) -> schemas.UserOut:
        with writing() as session:
            user = services.create_user(session, str(body.email), body.name, body.timezone)
            return schemas.UserOut.model_validate(user)

    @router.get("/users/{user_id}")
    def get_user(user_id: int) -> schemas.UserOut:
        with reading() as session:
            return schemas.UserOut.model_validate(services.get_user(session, user_id))

    @router.patch("/users/{user_id}")
    def edit_user(user_id: int, body: schemas.UserPatch) -> schemas.UserOut:
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

    @router.get("/users/{user_id}/counters")
    def get_counters(user_id: int) -> schemas.CountersOut:
        """Incoming, Planned, For today and the employees' counters, in the company's mode."""
        with reading() as session:
            found = services.user_counters(session, user_id, clock())
        return schemas.CountersOut(
            incoming=found.incoming,
            planned=found.planned,
            today=found.today,
            employees=schemas.TeamCountersOut(
                incoming=found.employees.incoming, planned=found.employees.planned
            ),
        )

    # --- cards --------------------------------------------------------------------------

    @router.post("/cards", status_code=201)
    def create_card(body: schemas.CardIn) -> schemas.CardOut:
        with writing() as session:
            card = services.create_card(
                session,
                title=body.title,
                entity_type=body.entity_type,
                stage=body.stage,
                responsible_id=body.responsible_id,
                contact_emails=[str(e) for e in body.contact_emails],
                contact_phones=body.contact_phones,
                default_region=default_region,
            )
            return schemas.CardOut.of(card, unread=False)

    @router.get("/cards/{card_id}")
    def get_card(card_id: int, acting: ActingUser = None) -> schemas.CardOut:
        """The card; opened by its responsible, it is no longer unread for them."""
        with reading() as session:
            card = services.get_card(session, card_id)
            viewer = acting if acting is not None else card.responsible_id
            shown = schemas.CardOut.of(card, unread.is_unread(session, card.id, viewer))
        if shown.unread and acting == shown.responsible_id:
            with writing() as session:
                unread.mark_read(session, card_id, acting)
            shown.unread = False  # the responsible is looking at it now
        return shown

    @router.patch("/cards/{card_id}")
    def edit_card(card_id: int, body: schemas.CardPatch) -> schemas.CardOut:
        with writing() as session:
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
            return schemas.CardOut.of(card, unread.is_unread(session, card.id, card.responsible_id))

    @router.post("/cards/{card_id}/read", status_code=204)
    def mark_read(card_id: int, acting: ActingUser = None) -> Response:
        with writing() as session:
            card = services.get_card(session, card_id)
            unread.mark_read(session, card.id, acting or card.responsible_id)
        return Response(status_code=204)

    @router.post("/cards/{card_id}/unread", status_code=204)
    def mark_unread(card_id: int, acting: ActingUser = None) -> Response:
        with writing() as session:
            card = services.get_card(session, card_id)
            unread.mark_unread(session, card.id, acting or card.responsible_id, clock())
        return Response(status_code=204)

    @router.get("/cards/{card_id}/history")
    def card_history(card_id: int) -> schemas.HistoryOut:
        with reading() as session:
            entries = services.card_history(session, card_id)
            return schemas.HistoryOut(items=[schemas.HistoryItemOut.of(e) for e in entries])

    @router.get("/cards/{card_id}/documents")
    def list_documents(card_id: int) -> schemas.DocumentListOut:
        """The card's files (inline images of mails are not listed)."""
        with reading() as session:
            found = services.list_documents(session, card_id)
            return schemas.DocumentListOut(
                items=[schemas.DocumentOut.model_validate(d) for d in found]
            )

    @router.get("/documents/{document_id}/content", response_class=Response)
    def document_content(document_id: int) -> Response:
        with reading() as session:
            document, content = services.document_content(session, document_id)
        # RFC 6266/5987: the file's own name, whatever its script.
        disposition = f"attachment; filename*=UTF-8''{quote(document.file_name)}"
        return Response(
            content, media_type=document.media_type, headers={"Content-Disposition": disposition}
        )

    @router.post("/cards/{card_id}/comments", status_code=201)
    def add_comment(
        card_id: int, body: schemas.CommentIn, acting: ActingUser = None
    ) -> schemas.CommentOut:
        author = _author(body, acting)
        with writing() as session:
            comment = activities.add_comment(
                session, card_id, author, body.text, clock(), activity_id=body.activity_id
            )
            return schemas.CommentOut.model_validate(comment)

    @router.get("/cards/{card_id}/comments")
    def list_comments(card_id: int) -> schemas.CommentListOut:
        with reading() as session:
            services.get_card(session, card_id)
            comments = activities.list_comments(session, card_id)
            return schemas.CommentListOut(
                items=[schemas.CommentOut.model_validate(c) for c in comments]
            )

    @router.get("/kanban")
    def kanban(
        entity_type: str = "deal",
        stage: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> schemas.KanbanOut:
        """One column's cards, latest focus first, each with why it is on top."""
        with reading() as session:
            cards = services.kanban(session, entity_type, stage, limit)
        return schemas.KanbanOut(
            cards=[schemas.KanbanCardOut.model_validate(c, from_attributes=True) for c in cards]
        )

    # --- activities ---------------------------------------------------------------------

    @router.post("/activities", status_code=201)
    def create_activity(body: schemas.ActivityIn) -> schemas.ActivityOut:
        with writing() as session:
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
            return schemas.ActivityOut.of(activity)

    @router.get("/activities")
    def list_activities(
        responsible_id: int | None = None,
        status: str | None = None,
        type: str | None = None,
        card_id: int | None = None,
        is_open: bool | None = None,
        deadline_from: datetime | None = None,
        deadline_to: datetime | None = None,
        subordinates_of: Annotated[
            int | None, Query(description="open activities of this user's subordinates")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> schemas.ActivityListOut:
        """Filtered activities, ordered like the Kanban (focus), then by deadline."""
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
                ),
            )
            return schemas.ActivityListOut(items=[schemas.ActivityOut.of(a) for a in found])

    @router.get("/activities/{activity_id}")
    def get_activity(activity_id: int) -> schemas.ActivityOut:
        with reading() as session:
            return schemas.ActivityOut.of(activities.get_activity(session, activity_id))

    @router.patch("/activities/{activity_id}")
    def edit_activity(
        activity_id: int, body: schemas.ActivityPatch, acting: ActingUser = None
    ) -> schemas.ActivityOut:
        with writing() as session:
            activity = activities.edit_activity(
                session,
                activities.get_activity(session, activity_id, lock=True),
                _fields(body),
                acting,
                clock(),
            )
            return schemas.ActivityOut.of(activity)

    @router.delete("/activities/{activity_id}", status_code=204)
    def delete_activity(activity_id: int) -> Response:
        with writing() as session:
            activities.delete_activity(
                session, activities.get_activity(session, activity_id, lock=True), clock()
            )
        return Response(status_code=204)

    @router.post("/activities/{activity_id}/close")
    def close_activity(
        activity_id: int, body: schemas.CloseIn, acting: ActingUser = None
    ) -> schemas.ActivityOut:
        """Complete it; each of its cards' history gets a "task_closed" entry."""
        with writing() as session:
            activity = activities.close_activity(
                session,
                activities.get_activity(session, activity_id, lock=True),
                body.status,
                body.success,
                acting,
                clock(),
            )
            return schemas.ActivityOut.of(activity)

    @router.post("/activities/{activity_id}/reopen")
    def reopen_activity(activity_id: int, acting: ActingUser = None) -> schemas.ActivityOut:
        with writing() as session:
            activity = activities.reopen_activity(
                session, activities.get_activity(session, activity_id, lock=True), acting, clock()
            )
            return schemas.ActivityOut.of(activity)

    @router.post("/activities/{activity_id}/comments", status_code=201)
    def comment_activity(
        activity_id: int, body: schemas.CommentIn, acting: ActingUser = None
    ) -> schemas.CommentOut:
        author = _author(body, acting)
        with writing() as session:
            activity = activities.get_activity(session, activity_id)
            comment = activities.add_comment(
                session, activity.card_id, author, body.text, clock(), activity_id=activity.id
            )
            return schemas.CommentOut.model_validate(comment)

    @router.post("/activities/bulk")
    def bulk(body: schemas.BulkIn, acting: ActingUser = None) -> schemas.BulkOut:
        """One action on many activities, all or nothing."""
        fields = _fields(body.changes) if body.changes else ActivityFields()
        fields.responsible_id = body.responsible_id or fields.responsible_id
        fields.status = body.status or fields.status
        with writing() as session:
            changed = activities.bulk(session, body.ids, body.action, fields, acting, clock())
        return schemas.BulkOut(changed=changed)

    # --- company settings ---------------------------------------------------------------

    @router.get("/settings")
    def get_settings() -> schemas.SettingsOut:
        with reading() as session:
            return schemas.SettingsOut.model_validate(company.all_settings(session))

    @router.patch("/settings")
    def edit_settings(body: schemas.SettingsPatch) -> schemas.SettingsOut:
        """`counter_mode` switches every counter at once (both modes are always maintained)."""
        with writing() as session:
            for key, value in body.model_dump(exclude_none=True).items():
                company.put(session, key, value)
            return schemas.SettingsOut.model_validate(company.all_settings(session))

    return router


def _author(body: schemas.CommentIn, acting: int | None) -> int:
    author = body.author_id if body.author_id is not None else acting
    if author is None:
        raise InvalidInput("a comment needs author_id (or X-Acting-User)")
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
