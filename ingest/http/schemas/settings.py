"""API shapes of the company settings: counter mode, activity types and statuses, history
rules (`ingest.http.settings`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ingest.wire import StrictIn


class StatusSetting(StrictIn):
    name: str = Field(min_length=1, max_length=32)
    closed: bool
    success: bool | None = None


Who = Literal["editors", "responsible", "admins"]


class SettingsOut(BaseModel):
    counter_mode: Literal["item_responsible", "activity_responsible"]
    activity_types: list[str]
    activity_statuses: list[StatusSetting]
    reopen_tasks: Who
    delete_documents: Who | Literal["nobody"]


class SettingsPatch(StrictIn):
    counter_mode: Literal["item_responsible", "activity_responsible"] | None = None
    activity_types: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, min_length=1, max_length=100
    )
    activity_statuses: list[StatusSetting] | None = Field(
        None,
        max_length=100,
        description="at least one open and one closing status",
        # As the schema states it; `crm_core.company` checks it (422).
        json_schema_extra={
            "allOf": [
                {"contains": {"properties": {"closed": {"const": False}}}},
                {"contains": {"properties": {"closed": {"const": True}}}},
            ]
        },
    )
    reopen_tasks: Who | None = Field(
        None,
        description="who may reopen a closed task: anyone who may edit the card (editors), "
        "the card's responsible, or administrators only",
    )
    delete_documents: Who | Literal["nobody"] | None = Field(
        None, description="who may delete a document of a card (for good)"
    )
