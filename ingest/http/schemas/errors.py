"""The one error shape of every API answer (`ErrorOut`), as the OpenAPI document states it
(`ingest.http.docs`) and the exception handlers (`ingest.http.errors`) write it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ValidationIssue(BaseModel):
    """One problem in a request's shape, as FastAPI reports it."""

    model_config = ConfigDict(extra="allow")  # FastAPI adds `input` and `ctx`

    loc: list[str | int] = Field(description="where: the part, then the field's path")
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error answer. `detail` says what is wrong in words, or, when the request does
    not have the shape this schema describes, lists each problem found."""

    detail: str | list[ValidationIssue]
