"""Provider payloads -> `crm_core.calls.Call`: our call-log JSON and Twilio Voice status
callbacks. Pure functions of the stored bytes, used by the hook (to answer 422 at once)
and again by the worker (which only has the stored bytes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from crm_core import schemas
from crm_core.calls import Call
from crm_core.errors import InvalidInput
from crm_core.phones import normalize_phone
from ingest.errors import RejectedInput
from ingest.payloads import form_params, load_json, number_field, valid

MAX_BATCH = 1000

# Twilio's final call statuses and what they mean here; the others (queued, ringing,
# in-progress...) are progress reports, not calls.
TWILIO_OUTCOMES = {
    "completed": "answered",
    "busy": "busy",
    "no-answer": "missed",
    "canceled": "missed",
    "failed": "missed",
}


@dataclass(frozen=True)
class OneCall:
    """A call of a request that passed validation, with the bytes to store for it."""

    index: int
    call_id: str
    raw: bytes


def split_calllog(
    source_id: int, body: bytes, region: str
) -> tuple[list[OneCall], list[schemas.HookRejection]]:
    """The valid calls of a request (one call, or `{"calls": [...]}`) and the bad ones.

    A body that is no call at all raises RejectedInput naming what is wrong."""
    document = load_json(body)
    if not isinstance(document, dict):
        raise RejectedInput('body: must be a call object or {"calls": [...]}')
    if "calls" not in document:
        elements, path, single = [document], "", True
    else:
        elements, path, single = document["calls"], "calls", False
        if not isinstance(elements, list) or not elements:
            raise RejectedInput("calls: must be a non-empty list")
        if len(elements) > MAX_BATCH:
            raise RejectedInput(f"calls: at most {MAX_BATCH} calls per request")
    good: list[OneCall] = []
    bad: list[schemas.HookRejection] = []
    for index, element in enumerate(elements):
        where = "" if single else f"{path}[{index}]"
        raw = body if single else json.dumps(element, ensure_ascii=False).encode()
        try:
            call = calllog_call(source_id, raw, region, where)
        except RejectedInput as exc:
            call_id = element.get("call_id") if isinstance(element, dict) else None
            bad.append(
                schemas.HookRejection(
                    index=index, call_id=str(call_id) if call_id else None, error=exc.reason
                )
            )
            continue
        good.append(OneCall(index, call.call_id, raw))
    return good, bad


def calllog_call(source_id: int, raw: bytes, region: str, where: str = "") -> Call:
    """One call of our format (as stored) -> Call; RejectedInput naming the bad field."""
    parsed = valid(schemas.CallIn, load_json(raw, where or "body"), where)
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


def twilio_call(
    source_id: int, raw: bytes, settings: dict[str, Any], region: str, received_at: datetime
) -> Call | None:
    """A Twilio Voice status callback (as stored) -> Call; None for a progress report.

    Which side is ours: the called one (`To`) of an inbound call, the calling one (`From`)
    of a call we made (`outbound-api`). A `<Dial>` leg (`outbound-dial`, with its
    `ParentCallSid`) is the outgoing leg of its parent call, and its `From` is the parent's
    caller ID (Twilio's default for `<Dial>`, unless its `callerId` names another): when
    that is one of our numbers, the parent was ours too and the leg calls the customer
    (`To`); otherwise `From` is the customer who called us, and the leg puts that incoming
    call through to `To`, whose owner (in `employees`) takes it."""
    parsed = valid(schemas.TwilioCallStatusIn, dict(form_params(raw)))
    outcome = TWILIO_OUTCOMES.get(parsed.CallStatus)
    if outcome is None:
        return None
    if parsed.Direction == "inbound":
        incoming, employee = True, _twilio_employee(parsed.To, settings, region)
    elif parsed.Direction == "outbound-dial" and parsed.ParentCallSid:
        ours = _owner(parsed.From, settings, region)
        incoming = ours is None
        employee = ours or _put_through_to(parsed.To, parsed.From, settings, region)
    else:
        incoming, employee = False, _twilio_employee(parsed.From, settings, region)
    theirs, field = (parsed.From, "From") if incoming else (parsed.To, "To")
    ended = _twilio_timestamp(parsed.Timestamp) if parsed.Timestamp else received_at
    duration = parsed.CallDuration or 0
    return Call(
        source_id=source_id,
        call_id=parsed.CallSid,
        provider="twilio",
        employee=employee,
        number=number_field(theirs, region, field),
        direction="incoming" if incoming else "outgoing",
        outcome=outcome,
        started_at=ended - timedelta(seconds=duration),
        duration_seconds=duration,
        recording_url=str(parsed.RecordingUrl) if parsed.RecordingUrl else None,
    )


def _twilio_timestamp(written: str) -> datetime:
    """Twilio's `Timestamp` (RFC 2822). An offset of `-0000` (RFC 2822's "no zone
    information") or none at all is read as UTC, the zone Twilio's timestamps are in."""
    try:
        moment = parsedate_to_datetime(written)
    except (TypeError, ValueError, IndexError):
        raise RejectedInput("Timestamp: not an RFC 2822 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 1970 <= moment.year <= 2200:
        raise RejectedInput("Timestamp: must be between 1970 and 2200")
    return moment


def _owner(number: str, settings: dict[str, Any], region: str) -> str | None:
    """The employee `employees` gives for `number` (a phone number in any format, or a
    Twilio client or SIP address written exactly), else None."""
    try:
        wanted: str | None = normalize_phone(number, region)
    except InvalidInput:
        wanted = None
    for written, employee in settings.get("employees", {}).items():
        try:
            if normalize_phone(written, region) == wanted:
                return str(employee)
        except InvalidInput:
            if written.strip() == number.strip():
                return str(employee)
    return None


def _put_through_to(number: str, caller: str, settings: dict[str, Any], region: str) -> str:
    """Who takes an incoming call that a `<Dial>` leg puts through to `number`: its owner in
    `employees`; else, the parent having called one of our numbers, their one owner when
    every number of the source is the same employee's (and no default_employee says other
    numbers exist); else the default_employee."""
    found = _owner(number, settings, region)
    if found is not None:
        return found
    default = settings.get("default_employee")
    owners = {str(e) for e in settings.get("employees", {}).values()}
    if (default is None or default == "") and len(owners) == 1:
        return owners.pop()
    if default is None or default == "":
        raise RejectedInput(
            f"no employee for {number}, where a <Dial> leg put a call from {caller} through: "
            "add it to the source's employees"
        )
    return str(default)


def _twilio_employee(number: str, settings: dict[str, Any], region: str) -> str:
    """The owner of our `number`, else the source's `default_employee`."""
    found = _owner(number, settings, region)
    if found is not None:
        return found
    default = settings.get("default_employee")
    if default is None or default == "":
        raise RejectedInput(
            f"no employee for our number {number}: add it to the source's employees"
        )
    return str(default)
