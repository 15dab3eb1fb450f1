"""Access rights (seed 003, SPEC "Access rights"): roles grant, per entity type and action
(read, add, edit, delete), a level (none, own, department, all). Every API route asks here,
for every id it is given; activities, comments, history, documents and archive addresses
follow their card.

A card a user may not read does not exist for them (NotFound, the same words as a real
miss, so ids are not confirmed); one they may read but not change is Forbidden. Contacts
follow their cards (`check_contact`), and an activity's responsible always sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, false, or_, select, true
from sqlalchemy.orm import Session, aliased

from crm_core.errors import Forbidden, InvalidInput, NotFound
from crm_core.models import (
    Activity,
    ActivityCard,
    Card,
    CardContact,
    Department,
    EntityType,
    Role,
    User,
    UserRole,
)

LEVELS = ("none", "own", "department", "all")
ACTIONS = ("read", "add", "edit", "delete")
ENTITY_TYPES = tuple(e.value for e in EntityType)
# A user without roles (a new user) may do everything with their own items.
DEFAULT_LEVEL = "own"


@dataclass(frozen=True)
class Actor:
    """Who a request acts as: a user (per-user token), or the admin token acting for the
    user named by X-Acting-User (or for nobody)."""

    user_id: int | None
    admin: bool = False


def check_permissions(value: Any) -> dict[str, dict[str, str]]:
    """A role's permissions as the API takes them; InvalidInput naming what is wrong."""
    if not isinstance(value, dict):
        raise InvalidInput("permissions: must be {entity type: {action: level}}")
    for entity, actions in value.items():
        if entity not in ENTITY_TYPES:
            raise InvalidInput(f"permissions.{entity}: unknown entity type")
        if not isinstance(actions, dict):
            raise InvalidInput(f"permissions.{entity}: must be {{action: level}}")
        for action, level in actions.items():
            if action not in ACTIONS:
                raise InvalidInput(f"permissions.{entity}.{action}: unknown action")
            if level not in LEVELS:
                raise InvalidInput(
                    f"permissions.{entity}.{action}: level must be one of {', '.join(LEVELS)}"
                )
    return value


def level(session: Session, actor: Actor, entity_type: str, action: str) -> str:
    """The best level any of the actor's roles grants (administrators: all)."""
    if actor.admin:
        return "all"
    if actor.user_id is None:
        return "none"
    roles = session.scalars(
        select(Role.permissions)
        .join(UserRole, UserRole.role_id == Role.id)
        .where(UserRole.user_id == actor.user_id)
    ).all()
    if not roles:
        return DEFAULT_LEVEL
    granted = [str(r.get(entity_type, {}).get(action, "none")) for r in roles]
    return max(granted, key=LEVELS.index)


def responsibles(session: Session, actor: Actor, lvl: str) -> list[int] | None:
    """Whose items a level reaches: None for everyone, else those users' ids."""
    if lvl == "all":
        return None
    if lvl == "none" or actor.user_id is None:
        return []
    if lvl == "own":
        return [actor.user_id]
    # department: the actor's own department and every department they head
    own = session.scalar(select(User.department_id).where(User.id == actor.user_id))
    headed = session.scalars(select(Department.id).where(Department.head_id == actor.user_id))
    departments = {d for d in [own, *headed] if d is not None}
    members = session.scalars(select(User.id).where(User.department_id.in_(departments)))
    return sorted({actor.user_id, *members})


def may(session: Session, actor: Actor, card: Card, action: str) -> bool:
    reach = responsibles(session, actor, level(session, actor, card.entity_type, action))
    return reach is None or card.responsible_id in reach


def card_for(
    session: Session, actor: Actor, card_id: int, action: str = "read", *, lock: bool = False
) -> Card:
    """The card if the actor may `action` it (read, edit, delete)."""
    query = select(Card).where(Card.id == card_id)
    card = session.scalar(query.with_for_update() if lock else query)
    if card is None or not may(session, actor, card, "read"):
        raise NotFound(f"card {card_id} does not exist")
    if action != "read" and not may(session, actor, card, action):
        raise Forbidden(f"you may not {action} this {card.entity_type} (card {card_id})")
    return card


def check_add(session: Session, actor: Actor, entity_type: str, responsible_id: int) -> None:
    """May the actor create an item of this type with this responsible?"""
    reach = responsibles(session, actor, level(session, actor, entity_type, "add"))
    if reach is not None and responsible_id not in reach:
        raise Forbidden(f"you may not add a {entity_type} for user {responsible_id}")


def activity_for(session: Session, actor: Actor, activity: Activity, action: str) -> Activity:
    """Activities follow their cards: reading one needs read on one of its cards, changing
    it needs edit on every one of them. Its responsible may always read and close it (the
    work was handed to them: `check_hand_over`), whatever their rights on its cards."""
    main = session.get(Card, activity.card_id)
    cards = list(activity.cards) or ([main] if main is not None else [])
    own = actor.user_id is not None and actor.user_id == activity.responsible_id
    if not own and not any(may(session, actor, c, "read") for c in cards):
        raise NotFound(f"activity {activity.id} does not exist")
    if action == "read" or (action == "close" and own):
        return activity
    for card in cards:
        if not may(session, actor, card, "edit"):
            raise Forbidden(f"you may not edit card {card.id}, so not its activities")
    return activity


def check_hand_over(session: Session, actor: Actor, cards: list[Card], responsible_id: int) -> None:
    """May the actor make `responsible_id` the responsible of an activity on these cards?
    Themselves, always (the right to edit the cards is checked apart); anyone else only as
    for handing a card over: the actor's `add` level on each card's entity type must reach
    them (so an administrator anyone, a department head their department, "own" nobody)."""
    if actor.user_id is not None and responsible_id == actor.user_id:
        return
    for entity_type in dict.fromkeys(c.entity_type for c in cards):
        reach = responsibles(session, actor, level(session, actor, entity_type, "add"))
        if reach is not None and responsible_id not in reach:
            raise Forbidden(
                f"responsible_id: you may not hand a {entity_type}'s activity to user "
                f"{responsible_id} (your add level on {entity_type} does not reach them)"
            )


def readable(session: Session, actor: Actor, card: type[Card] = Card) -> ColumnElement[bool]:
    """A condition on `card` (`Card`, or an alias of it) for list views (Kanban, activities,
    calendar, reports)."""
    clauses = []
    everything = True
    for entity_type in ENTITY_TYPES:
        reach = responsibles(session, actor, level(session, actor, entity_type, "read"))
        if reach is None:
            clauses.append(card.entity_type == entity_type)
            continue
        everything = False
        if reach:
            clauses.append((card.entity_type == entity_type) & card.responsible_id.in_(reach))
    if everything:
        return true()
    return or_(*clauses) if clauses else false()


def visible_activities(session: Session, actor: Actor) -> ColumnElement[bool]:
    """A condition on `Activity` for list views, the same rule as `activity_for(read)`: on
    any card the actor may read, or the actor's own (they are its responsible). Built on an
    alias of `Card`, so it holds in a query that also joins the activity's main card."""
    if actor.admin:
        return true()
    other = aliased(Card)
    on_readable_card = exists(
        select(ActivityCard.activity_id)
        .join(other, other.id == ActivityCard.card_id)
        .where(ActivityCard.activity_id == Activity.id, readable(session, actor, other))
    )
    if actor.user_id is None:
        return on_readable_card
    return or_(on_readable_card, Activity.responsible_id == actor.user_id)


def may_link_contact(session: Session, actor: Actor, contact_id: int) -> bool:
    """SPEC "Which card?": a user may link an existing contact (to a card, or an activity)
    only if she may read one of the contact's cards; a contact on no card yet (made by an
    unmatched call, say) is free; an administrator may link any. Otherwise a new card of
    hers, the most recently active, would take the contact's next calls, chats and payments
    away from the department that has the customer."""
    if actor.admin:
        return True
    cards = session.scalars(
        select(Card)
        .join(CardContact, CardContact.card_id == Card.id)
        .where(CardContact.contact_id == contact_id)
    ).all()
    return not cards or any(may(session, actor, c, "read") for c in cards)


def check_contact(session: Session, actor: Actor, contact_id: int, shown_as: str) -> None:
    """`may_link_contact`, or Forbidden naming the contact by `shown_as`: what the user gave
    (never the contact's other details, which are not hers to see)."""
    if not may_link_contact(session, actor, contact_id):
        raise Forbidden(
            f"the contact {shown_as} is on a card you cannot read; ask its responsible or "
            "an administrator to share that card with you, or to add the contact for you"
        )


def require_admin(actor: Actor) -> None:
    if not actor.admin:
        raise Forbidden("only an administrator may do this")


def require_self_or_admin(actor: Actor, user_id: int) -> None:
    if not actor.admin and actor.user_id != user_id:
        raise Forbidden("only the user themselves or an administrator may do this")
