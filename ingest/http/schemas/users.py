"""API shapes of users: the user, their personal tokens and their counters
(`ingest.http.users`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ingest.wire import DbId, EmailAddress, StrictIn, TimeZone, whole


class UserIn(StrictIn):
    email: EmailAddress
    name: str = Field(min_length=1, max_length=200)
    timezone: TimeZone = "UTC"


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    timezone: str
    planned_lead_minutes: int
    manager_id: int | None
    department_id: int | None
    is_admin: bool


class UserListOut(BaseModel):
    items: list[UserOut]


class UserPatch(StrictIn):
    planned_lead_minutes: Annotated[int, Field(ge=0, le=10080), BeforeValidator(whole)] | None = (
        Field(None, description="N: minutes before a deadline that count as Planned")
    )
    timezone: TimeZone | None = None
    manager_id: DbId | None = Field(None, description="null removes the manager")


class TokenIn(StrictIn):
    name: str = Field("", max_length=200)


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="shown only in this answer; stored hashed")


class TokenListOut(BaseModel):
    items: list[TokenOut]


class TeamCountersOut(BaseModel):
    incoming: int
    planned: int


class CountersOut(BaseModel):
    incoming: int
    planned: int
    today: int
    employees: TeamCountersOut
