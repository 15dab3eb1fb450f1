"""Access rights over /api: a user's department, administrator flag and roles; the roles
with their grants; the departments. Changes are for administrators."""

from fastapi import APIRouter

from crm_core import accounts, user_cases
from ingest.http.deps import Admin, Ctx, SelfOrAdmin, Who
from ingest.http.schemas.access import (
    DepartmentIn,
    DepartmentListOut,
    DepartmentOut,
    RoleIn,
    RoleListOut,
    RoleOut,
    RolePatch,
    UserAccessPatch,
    UserRolesIn,
    UserRolesOut,
)
from ingest.http.schemas.users import UserOut

router = APIRouter(prefix="/api")


@router.patch("/users/{user_id}/access")
def edit_access(user_id: int, body: UserAccessPatch, who: Admin, ctx: Ctx) -> UserOut:
    """Department and administrator flag (administrators)."""
    with ctx.writing() as session:
        user = accounts.place_user(
            session,
            user_id,
            department_id=body.department_id,
            clear_department="department_id" in body.model_fields_set
            and body.department_id is None,
            is_admin=body.is_admin,
        )
        return UserOut.model_validate(user)


@router.get("/users/{user_id}/roles")
def get_roles(user_id: int, who: SelfOrAdmin, ctx: Ctx) -> UserRolesOut:
    with ctx.reading() as session:
        user_cases.get_user(session, user_id)
        return UserRolesOut(role_ids=accounts.role_ids(session, user_id))


@router.put("/users/{user_id}/roles")
def set_roles(user_id: int, body: UserRolesIn, who: Admin, ctx: Ctx) -> UserRolesOut:
    """The user's roles, replaced (administrators); none: the default (all own)."""
    with ctx.writing() as session:
        return UserRolesOut(role_ids=accounts.set_roles(session, user_id, body.role_ids))


@router.post("/roles", status_code=201)
def create_role(body: RoleIn, who: Admin, ctx: Ctx) -> RoleOut:
    with ctx.writing() as session:
        grants = body.model_dump(mode="json")["permissions"]
        return RoleOut.model_validate(accounts.create_role(session, body.name, grants))


@router.get("/roles")
def list_roles(who: Admin, ctx: Ctx) -> RoleListOut:
    with ctx.reading() as session:
        return RoleListOut(items=[RoleOut.model_validate(r) for r in accounts.list_roles(session)])


@router.patch("/roles/{role_id}")
def edit_role(role_id: int, body: RolePatch, who: Admin, ctx: Ctx) -> RoleOut:
    with ctx.writing() as session:
        grants = body.model_dump(mode="json")["permissions"]
        return RoleOut.model_validate(accounts.edit_role(session, role_id, grants))


@router.post("/departments", status_code=201)
def create_department(body: DepartmentIn, who: Admin, ctx: Ctx) -> DepartmentOut:
    with ctx.writing() as session:
        department = accounts.create_department(session, body.name, body.head_id)
        return DepartmentOut.model_validate(department)


@router.get("/departments")
def list_departments(who: Who, ctx: Ctx) -> DepartmentListOut:
    with ctx.reading() as session:
        found = accounts.list_departments(session)
        return DepartmentListOut(items=[DepartmentOut.model_validate(d) for d in found])
