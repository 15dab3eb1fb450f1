"""The `calllog` provider: our call-log app's JSON (one call, or a batch of up to 1,000),
signed with a secret we generate. Hook: split the batch, naming the bad calls; worker: one
stored call -> `crm_core.calls.Call`.
"""

from __future__ import annotations

import json
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, Field, HttpUrl

from crm_core.calls import Call
from crm_core.models import dedupe_key
from ingest.calllog.processing import CALL
from ingest.errors import RejectedInput
from ingest.provider import (
    ActiveSource,
    HookRejection,
    HookRequest,
    OneInput,
    Split,
    StoredSource,
)
from ingest.signatures import TimestampSigned
from ingest.wire import Moment, Region, StrictIn, UserRef, load_json, number_field, valid

MAX_BATCH = 1000


class CallLogSourceIn(StrictIn):
    """Our call-log app: requests signed with a secret we generate (shown once)."""

    kind: Literal["calllog"]
    name: str = Field(min_length=1, max_length=200)
    default_region: Region | None = None


class CallIn(BaseModel):
    """One call as our call-log app sends it."""

    call_id: str = Field(min_length=1, max_length=200, description="the app's id of the call")
    employee: UserRef = Field(description="the CRM user: id or e-mail")
    number: str = Field(min_length=1, max_length=64, description="the other party, any format")
    direction: Literal["incoming", "outgoing"]
    outcome: Literal["answered", "missed", "rejected", "voicemail", "busy", "blocked"]
    started_at: Moment = Field(description="ISO 8601 with its UTC offset")
    duration_seconds: int = Field(0, ge=0, le=7 * 24 * 3600)
    recording_url: HttpUrl | None = None


_EXAMPLE = {
    "call_id": "8f14e45f-2026-11-22-0001",
    "employee": "anna@example.com",
    "number": "06 12 34 56 78",
    "direction": "incoming",
    "outcome": "missed",
    "started_at": "2026-11-22T10:15:00+01:00",
    "duration_seconds": 0,
    "recording_url": None,
}


class CallLog(TimestampSigned):
    kind = "calllog"
    channel = "call"
    settings_model = CallLogSourceIn
    media = (CALL,)
    hook_doc = (
        'One call, or `{"calls": [...]}` with up to 1,000. Headers: `X-Timestamp` (Unix '
        "seconds, within 5 minutes of our clock) and `X-Signature: sha256=<hex HMAC-SHA256 "
        'of timestamp + "." + raw body, keyed with the source\'s secret>`. A call id already '
        "received is answered 202 again and changes nothing."
    )
    body_docs = MappingProxyType(
        {
            "application/json": {
                "schema": CallIn.model_json_schema(),
                "examples": {
                    "one call": {"value": _EXAMPLE},
                    "a batch": {"value": {"calls": [_EXAMPLE]}},
                },
            }
        }
    )

    def split(
        self, source: ActiveSource, request: HookRequest, now: datetime, region: str
    ) -> Split:
        """The valid calls of a request (one call, or `{"calls": [...]}`) and the bad ones;
        RejectedInput naming what is wrong when none is valid."""
        document = load_json(request.body)
        if not isinstance(document, dict):
            raise RejectedInput('body: must be a call object or {"calls": [...]}')
        if "calls" not in document:
            elements, single = [document], True
        else:
            elements, single = document["calls"], False
            if not isinstance(elements, list) or not elements:
                raise RejectedInput("calls: must be a non-empty list")
            if len(elements) > MAX_BATCH:
                raise RejectedInput(f"calls: at most {MAX_BATCH} calls per request")
        split = Split()
        for index, element in enumerate(elements):
            where = "" if single else f"calls[{index}]"
            raw = request.body if single else json.dumps(element, ensure_ascii=False).encode()
            try:
                call = read_call(source.id, raw, region, where)
            except RejectedInput as exc:
                call_id = element.get("call_id") if isinstance(element, dict) else None
                split.rejected.append(
                    HookRejection(
                        index=index, call_id=str(call_id) if call_id else None, error=exc.reason
                    )
                )
                continue
            split.inputs.append(OneInput(dedupe_key("call", source.id, call.call_id), raw))
        if not split.inputs:
            raise RejectedInput("; ".join(r.error for r in split.rejected))
        return split

    def parse(self, source: StoredSource, raw: bytes, received_at: datetime) -> Call:
        return read_call(source.id, raw, source.region)


def read_call(source_id: int, raw: bytes, region: str, where: str = "") -> Call:
    """One call of our format (as stored) -> Call; RejectedInput naming the bad field."""
    parsed = valid(CallIn, load_json(raw, where or "body"), where)
    return Call(
        source_id=source_id,
        call_id=parsed.call_id,
        provider="calllog",
        employee=str(parsed.employee),
        number=number_field(parsed.number, region, f"{where}.number" if where else "number"),
        direction=parsed.direction,
        outcome=parsed.outcome,
        started_at=parsed.started_at,
        duration_seconds=parsed.duration_seconds,
        recording_url=str(parsed.recording_url) if parsed.recording_url else None,
    )


PROVIDER = CallLog()
