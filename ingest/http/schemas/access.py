"""API shapes of access rights: roles and their grants, a user's roles, departments and a
user's place in them (`ingest.http.access`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ingest.http.schemas.cards import EntityTypeName
from ingest.wire import DbId, StrictIn

Level = Literal["none", "own", "department", "all"]
Grants = dict[
    EntityTypeName,
    dict[Literal["read", "add", "edit", "delete"], Level],
]


class RoleIn(StrictIn):
    name: str = Field(min_length=1, max_length=200)
    permissions: Grants = Field(
        description='per entity type and action a level, e.g. {"deal": {"read": "all", '
        '"edit": "own"}}; what is not given is "none"'
    )


class RolePatch(StrictIn):
    permissions: Grants


class RoleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    permissions: dict[str, dict[str, str]]


class RoleListOut(BaseModel):
    items: list[RoleOut]


class UserRolesIn(StrictIn):
    role_ids: list[DbId] = Field(max_length=100)


class UserRolesOut(BaseModel):
    role_ids: list[int]


class DepartmentIn(StrictIn):
    name: str = Field(min_length=1, max_length=200)
    head_id: DbId | None = None


class DepartmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    head_id: int | None


class DepartmentListOut(BaseModel):
    items: list[DepartmentOut]


class UserAccessPatch(StrictIn):
    department_id: DbId | None = Field(None, description="null removes the department")
    is_admin: bool | None = None
