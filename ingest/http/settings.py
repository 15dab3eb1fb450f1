"""/api/settings: the company settings (counter mode, activity types and statuses, history
rules); changed by administrators."""

from fastapi import APIRouter

from crm_core import company
from ingest.http.deps import Admin, Ctx, Who
from ingest.http.schemas.settings import SettingsOut, SettingsPatch

router = APIRouter(prefix="/api")


@router.get("/settings")
def get_settings(who: Who, ctx: Ctx) -> SettingsOut:
    with ctx.reading() as session:
        return SettingsOut.model_validate(company.all_settings(session))


@router.patch("/settings")
def edit_settings(body: SettingsPatch, who: Admin, ctx: Ctx) -> SettingsOut:
    """`counter_mode` switches every counter at once (both modes are always maintained);
    `reopen_tasks` and `delete_documents` are the history settings (administrators)."""
    with ctx.writing() as session:
        for key, value in body.model_dump(exclude_none=True).items():
            company.put(session, key, value)
        return SettingsOut.model_validate(company.all_settings(session))
