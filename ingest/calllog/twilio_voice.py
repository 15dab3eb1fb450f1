"""The `twilio_voice` provider: Twilio Voice status callbacks (form-encoded, signed with
the account's auth token, `X-Twilio-Signature`). A final status is a call; a progress report
(ringing, in-progress...) is answered and not stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from crm_core.calls import Call
from crm_core.errors import InvalidInput
from crm_core.models import dedupe_key
from crm_core.phones import normalize_phone
from ingest.calllog.processing import CALL
from ingest.errors import RejectedInput
from ingest.provider import ActiveSource, HookRequest, OneInput, Split, StoredSource
from ingest.signatures import TwilioSigned
from ingest.wire import Region, StrictIn, UserRef, form_params, number_field, valid

# Twilio's final call statuses and what they mean here; the others (queued, ringing,
# in-progress...) are progress reports, not calls.
TWILIO_OUTCOMES = {
    "completed": "answered",
    "busy": "busy",
    "no-answer": "missed",
    "canceled": "missed",
    "failed": "missed",
}


class TwilioVoiceSourceIn(StrictIn):
    """Twilio Voice status callbacks, signed with the account's auth token."""

    kind: Literal["twilio_voice"]
    name: str = Field(min_length=1, max_length=200)
    auth_token: str = Field(min_length=1, max_length=200, description="never shown again")
    public_base_url: HttpUrl = Field(
        description="scheme://host[:port] Twilio calls, e.g. https://crm.example.com; the "
        "signature covers this plus the request's path and query, whatever a proxy changes"
    )
    employees: dict[str, UserRef] = Field(
        default_factory=dict,
        description="the company's Twilio numbers (any format), and the numbers or clients "
        "(`client:anna`) a `<Dial>` puts calls through to -> employee id or e-mail",
    )
    default_employee: UserRef | None = Field(None, description="for a number not in `employees`")
    default_region: Region | None = None


class TwilioCallStatusIn(BaseModel):
    """The fields we read of a Twilio Voice status callback (form-encoded)."""

    model_config = ConfigDict(extra="ignore")

    CallSid: str = Field(pattern=r"^CA[0-9a-fA-F]{32}$")
    AccountSid: str = Field(min_length=1, max_length=64)
    From: str = Field(min_length=1, max_length=64)
    To: str = Field(min_length=1, max_length=64)
    CallStatus: Literal[
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "failed",
        "no-answer",
        "canceled",
    ]
    Direction: str = Field(min_length=1, max_length=32)
    ParentCallSid: str | None = Field(
        None, pattern=r"^(CA[0-9a-fA-F]{32})?$", description="a `<Dial>` leg's parent call"
    )
    CallDuration: int | None = Field(None, ge=0, le=7 * 24 * 3600)
    Timestamp: str | None = None
    RecordingUrl: HttpUrl | None = None


class TwilioVoice(TwilioSigned):
    kind = "twilio_voice"
    channel = "call"
    settings_model = TwilioVoiceSourceIn
    media = (CALL,)
    hook_doc = "Twilio's form-encoded status callback, signed by Twilio (`X-Twilio-Signature`)."
    body_docs = MappingProxyType(
        {"application/x-www-form-urlencoded": {"schema": TwilioCallStatusIn.model_json_schema()}}
    )

    def split(
        self, source: ActiveSource, request: HookRequest, now: datetime, region: str
    ) -> Split:
        call = read_call(source.id, request.body, source.settings, region, now)
        if call is None:
            status = dict(form_params(request.body)).get("CallStatus")
            return Split(ignored=[f"CallStatus {status} is a progress report, not a call"])
        return Split([OneInput(dedupe_key("call", source.id, call.call_id), request.body)])

    def parse(self, source: StoredSource, raw: bytes, received_at: datetime) -> Call:
        call = read_call(source.id, raw, source.settings, source.region, received_at)
        if call is None:
            raise RejectedInput("a progress report, not a call")
        return call


def read_call(
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
    parsed = valid(TwilioCallStatusIn, dict(form_params(raw)))
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


PROVIDER = TwilioVoice()
