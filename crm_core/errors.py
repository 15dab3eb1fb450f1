"""Errors of the CRM core's use cases; callers map them (HTTP status, rejected input)."""

from typing import Any, TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")


class CoreError(Exception):
    """A use case refused; the message says why, in words a user understands."""


class NotFound(CoreError):
    pass


class Forbidden(CoreError):
    pass


class Conflict(CoreError):
    pass


class InvalidInput(CoreError):
    pass


def get_or_not_found(session: Session, model: type[T], key: Any, what: str) -> T:
    """The row with this key, or NotFound("<what> <key> does not exist")."""
    found = session.get(model, key)
    if found is None:
        raise NotFound(f"{what} {key} does not exist")
    return found
