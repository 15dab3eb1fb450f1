"""Request and response shapes of the JSON API (pydantic), built from the core's models.

The HTTP layer validates with these and serialises through them; the use cases never see
HTTP.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import zoneinfo
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import email_validator
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    WithJsonSchema,
)

from crm_core.models import Activity, Card, HistoryEntry


def _plausible(moment: datetime) -> datetime:
    if not 1970 <= moment.year <= 2200:
        raise ValueError("must be between 1970 and 2200")
    return moment


# A moment from outside (a call's start, a message's time): with its offset, and plausible,
# so that nothing accepted at the door overflows later in a worker.
Moment = Annotated[AwareDatetime, AfterValidator(_plausible)]
# email-validator refuses special-use names (`.local`, `.test`, `localhost`, `.arpa`...)
# whatever its options. They are valid syntax (RFC 5322) and many companies run internal
# `.local` domains, so the list is emptied, as the library's documentation allows.
email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()


# The IANA names of this machine's zone database: what the schema lists is what is taken.
ZONES = frozenset(zoneinfo.available_timezones())


def _known_zone(name: str) -> str:
    if name not in ZONES:
        raise ValueError(f"unknown time zone {name[:64]!r}: an IANA name, e.g. Europe/Paris")
    return name


def _address(value: str) -> str:
    """An RFC 5322 addr-spec (internationalized ones too, RFC 6531), normalized as
    email-validator does; no DNS lookup, and a name need not be publicly deliverable."""
    try:
        found = email_validator.validate_email(
            value,
            check_deliverability=False,
            globally_deliverable=False,
            allow_quoted_local=True,
            allow_domain_literal=True,
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"not an e-mail address: {exc}") from None
    return found.normalized


# An e-mail address given to the API (pydantic's EmailStr refuses reserved names).
EmailAddress = Annotated[
    str,
    Field(max_length=320),
    AfterValidator(_address),
    WithJsonSchema({"type": "string", "format": "idn-email", "maxLength": 320}),
]
# A moment given to the API: RFC 3339 text with its UTC offset (the schema's date-time),
# e.g. 2026-11-22T10:15:00+01:00. Not a number: pydantic would read "0.5" as a Unix time.
RFC3339 = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(RFC3339, value):
        try:
            return datetime.fromisoformat(value)  # a datetime: strict models take it as is
        except ValueError:
            pass  # e.g. a 30th of February: the message below
    elif isinstance(value, datetime):
        return value
    raise ValueError("must be a date and time with its UTC offset, e.g. 2026-11-22T10:15:00+01:00")


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": f"^{RFC3339}$"}),
]
# The kinds of card (`crm_core.models.EntityType`).
EntityTypeName = Literal["deal", "lead", "invoice", "smart_process"]


def _whole(value: Any) -> Any:
    # JSON Schema's integer is any number without a fractional part: 7.0 is 7.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A row's id as the API takes it: a positive database integer (32 bits on PostgreSQL). In a
# body (`StrictIn`) a JSON number without a fraction, never a boolean or a text; `_whole`
# comes after the bounds so that the schema shows them.
DbId = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(_whole)]
# A reference to a CRM user in a payload: an id (a database integer) or an e-mail.
UserRef = DbId | EmailAddress
# An IANA time zone name, as the zone database of this machine knows them (the schema
# lists them, so a client can tell before sending).
TimeZone = Annotated[
    str,
    Field(max_length=64),
    AfterValidator(_known_zone),
    WithJsonSchema({"type": "string", "enum": sorted(ZONES)}),
]
# Text that is not blank: a character Python's str.isspace() is false for. The class names
# those characters one by one, so that every regex engine reads it alike (`\s` differs).
NOT_BLANK = "[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# A host to connect to: a DNS name of letters, digits and hyphens (RFC 1123), or an IP
# address (IPv4 is a DNS name's shape too; IPv6 without brackets or zone).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*"


def check_host(value: str) -> str:
    """`value` if it is a host name or an IP address; ValueError saying what a host is."""
    if len(value) <= 253 and re.fullmatch(HOSTNAME, value):
        return value
    if "%" not in value:
        with contextlib.suppress(ValueError):
            ipaddress.IPv6Address(value)
            return value
    raise ValueError(
        "must be a host name (letters, digits, hyphens, dots: RFC 1123) or an IP address, "
        "e.g. imap.example.com, 192.0.2.7 or 2001:db8::7"
    )


Host = Annotated[
    str,
    AfterValidator(check_host),
    WithJsonSchema(
        {
            "type": "string",
            "anyOf": [
                {"pattern": f"^{HOSTNAME}$", "maxLength": 253},
                {"format": "ipv6", "pattern": "^[^%]*$"},
            ],
            "description": "a host name (RFC 1123) or an IP address",
        }
    ),
]


class StrictIn(BaseModel):
    """A request body, read as its schema says: no coercion (pydantic would take 0 for
    false, "5" for 5, a number for a moment), so that what the API accepts is what the
    OpenAPI document describes. An integer may be written 5.0, as JSON Schema allows."""

    model_config = ConfigDict(strict=True)


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
    planned_lead_minutes: Annotated[int, Field(ge=0, le=10080), BeforeValidator(_whole)] | None = (
        Field(None, description="N: minutes before a deadline that count as Planned")
    )
    timezone: TimeZone | None = None
    manager_id: DbId | None = Field(None, description="null removes the manager")


class CardPatch(StrictIn):
    title: str | None = Field(None, min_length=1, max_length=300)
    stage: str | None = Field(None, min_length=1, max_length=100)
    responsible_id: DbId | None = None
    outcome: Literal["won", "lost", "open"] | None = Field(
        None, description="won or lost closes the card; open reopens it"
    )


class CardIn(StrictIn):
    title: str = Field(min_length=1, max_length=300)
    entity_type: EntityTypeName
    stage: str = Field(min_length=1, max_length=100, description="pipeline stage = Kanban column")
    responsible_id: DbId
    contact_emails: list[EmailAddress] = []
    contact_phones: list[str] = []


class ContactOut(BaseModel):
    id: int
    name: str
    emails: list[str]
    phones: list[str]


class CardOut(BaseModel):
    id: int
    title: str
    entity_type: str
    stage: str
    responsible_id: int
    outcome: str | None = Field(description="won or lost; null while the card is open")
    unread: bool
    unread_since: datetime | None = Field(
        None,
        description="GET by a viewer it was unread for: since when (history logged from then "
        "on was new to them), even though opening it just marked it read",
    )
    focus_at: datetime | None
    focus_reason: str | None
    contacts: list[ContactOut]

    @classmethod
    def of(cls, card: Card, unread: bool) -> CardOut:
        return cls(
            id=card.id,
            title=card.title,
            entity_type=card.entity_type,
            stage=card.stage,
            responsible_id=card.responsible_id,
            outcome=card.outcome,
            unread=unread,
            focus_at=card.focus_at,
            focus_reason=card.focus_reason,
            contacts=[
                ContactOut(
                    id=c.id,
                    name=c.name,
                    emails=[e.address for e in c.emails],
                    phones=[p.number for p in c.phones],
                )
                for c in card.contacts
            ],
        )


class ArchiveAddressOut(BaseModel):
    address: str


class HistoryItemOut(BaseModel):
    id: int
    type: str
    occurred_at: datetime
    logged_at: datetime
    logged_by_id: int | None
    data: dict[str, Any] = Field(exclude=True)

    @classmethod
    def of(cls, entry: HistoryEntry) -> dict[str, Any]:
        """The entry's common fields with its type's own fields (from, to, subject...) inline."""
        common = cls(
            id=entry.id,
            type=entry.type,
            occurred_at=entry.occurred_at,
            logged_at=entry.logged_at,
            logged_by_id=entry.logged_by_id,
            data=entry.data,
        ).model_dump(mode="json")
        return {**entry.data, **common}


class HistoryOut(BaseModel):
    items: list[dict[str, Any]]


class TeamCountersOut(BaseModel):
    incoming: int
    planned: int


class CountersOut(BaseModel):
    incoming: int
    planned: int
    today: int
    employees: TeamCountersOut


class KanbanCardOut(BaseModel):
    id: int
    title: str
    entity_type: str
    stage: str
    responsible_id: int
    unread: bool
    focus_at: datetime | None
    focus_reason: str | None


class KanbanOut(BaseModel):
    cards: list[KanbanCardOut]


class InboundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    channel: str
    recipient: str
    status: str
    reason: str | None
    error: str | None
    attempts: int
    card_id: int | None
    received_at: datetime
    finished_at: datetime | None
    legal_hold: bool
    purged_at: datetime | None = Field(
        description="when retention deleted the raw input (null: still kept)"
    )


class LegalHoldIn(StrictIn):
    hold: bool


class InboundListOut(BaseModel):
    items: list[InboundOut]


class MyInboundOut(BaseModel):
    """One of the user's own inputs that did not simply land on its card."""

    id: int
    status: str = Field(
        description="rejected, held or failed; processed when the input is on its card but "
        "carries a notice (`reason`)"
    )
    received_at: datetime = Field(description="when the front door accepted it (the SMTP 250)")
    finished_at: datetime | None = Field(description="when processing refused, held or ended it")
    recipient: str = Field(description="the archive address it was sent to")
    subject: str | None = Field(
        description="the Subject header of the message as received (null: none, or the raw "
        "input was deleted by retention)"
    )
    reason: str | None = Field(description="the reason as stored, for support")
    reason_text: str = Field(
        description="the reason in plain words for the person who sent it, e.g. "
        "`address revoked on 3 Dec`"
    )


class MyInboundListOut(BaseModel):
    items: list[MyInboundOut] = Field(description="newest first")


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


class ActivityIn(StrictIn):
    # As the schema states it (`crm_core.activities` checks it): a card, by one or the other.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["card_id"], "properties": {"card_id": {"type": "integer"}}},
                {
                    "required": ["card_ids"],
                    "properties": {"card_ids": {"type": "array", "minItems": 1}},
                },
            ]
        }
    )

    card_id: DbId | None = None
    card_ids: list[DbId] | None = Field(
        None, description="several cards: the first is the main one"
    )
    type: str = Field(description="a name from the company's activity types")
    subject: str = Field("", max_length=500)
    description: str = ""
    responsible_id: DbId
    deadline: Instant | None = Field(None, description="ISO 8601 with offset, or null")
    status: str | None = None
    user_ids: list[DbId] = Field([], description="additional users")
    contact_ids: list[DbId] = []

    def all_card_ids(self) -> list[int]:
        return ([self.card_id] if self.card_id is not None else []) + (self.card_ids or [])


class ActivityPatch(StrictIn):
    """Fields to change; absent ones stay. `deadline: null` removes the deadline."""

    card_ids: list[DbId] | None = Field(None, min_length=1, description="the first is the main one")
    type: str | None = None
    subject: str | None = Field(None, max_length=500)
    description: str | None = None
    responsible_id: DbId | None = None
    deadline: Instant | None = None
    status: str | None = None
    user_ids: list[DbId] | None = None
    contact_ids: list[DbId] | None = None


class CloseIn(StrictIn):
    status: str | None = Field(None, description="a closing status; default done")
    success: bool | None = Field(None, description="overrides the status's own success")


class BulkIn(StrictIn):
    ids: list[DbId] = Field(min_length=1, max_length=1000)
    action: Literal["delete", "edit", "assign", "done", "not_done"]
    responsible_id: DbId | None = Field(None, description="for assign")
    status: str | None = Field(None, description="for done: which closing status")
    changes: ActivityPatch | None = Field(None, description="for edit")


class BulkOut(BaseModel):
    changed: int


class ActivityOut(BaseModel):
    id: int
    card_id: int | None = Field(
        description="the main card; null for a reader who may not read it (its responsible "
        "sees an activity on cards they may not read)"
    )
    card_ids: list[int] = Field(description="every card it concerns that the reader may read")
    type: str
    incoming: bool
    is_open: bool
    status: str
    success: bool | None
    responsible_id: int
    user_ids: list[int]
    contact_ids: list[int]
    deadline: datetime | None
    subject: str
    description: str
    created_at: datetime
    closed_at: datetime | None
    closed_by_id: int | None
    next_focus_at: datetime | None

    @classmethod
    def of(cls, a: Activity) -> ActivityOut:
        return cls(
            id=a.id,
            card_id=a.card_id,
            card_ids=[c.id for c in a.cards],
            type=a.type,
            incoming=a.incoming,
            is_open=a.is_open,
            status=a.status,
            success=a.success,
            responsible_id=a.responsible_id,
            user_ids=[u.id for u in a.users],
            contact_ids=[c.id for c in a.contacts],
            deadline=a.deadline,
            subject=a.subject,
            description=a.description,
            created_at=a.created_at,
            closed_at=a.closed_at,
            closed_by_id=a.closed_by_id,
            next_focus_at=a.next_focus_at,
        )


class ActivityListOut(BaseModel):
    items: list[ActivityOut]


class CommentIn(StrictIn):
    text: str = Field(min_length=1, max_length=20_000, pattern=NOT_BLANK)
    author_id: DbId | None = Field(None, description="default: the acting user")
    activity_id: DbId | None = None


class CommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    card_id: int
    activity_id: int | None
    author_id: int
    text: str
    created_at: datetime


class CommentListOut(BaseModel):
    items: list[CommentOut]


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    card_id: int
    history_entry_id: int | None
    file_name: str
    media_type: str
    size: int
    sha256: str
    created_at: datetime


class DocumentListOut(BaseModel):
    items: list[DocumentOut]


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


# --- access rights ---------------------------------------------------------------------

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


class CalendarFeedOut(BaseModel):
    url: str = Field(description="the feed to subscribe to; its secret is shown only here")


class NoteIn(StrictIn):
    text: str = Field(min_length=1, max_length=20_000, pattern=NOT_BLANK)


class CalendarUserOut(BaseModel):
    user_id: int
    name: str
    timezone: str
    activities: list[ActivityOut]


class CalendarOut(BaseModel):
    view: str
    start: datetime
    end: datetime
    users: list[CalendarUserOut]


class ReportRowOut(BaseModel):
    type: str
    status: str
    responsible_id: int
    responsible: str
    count: int


class ReportOut(BaseModel):
    since: datetime
    until: datetime
    rows: list[ReportRowOut]


# --- webhook sources -------------------------------------------------------------------

Region = Annotated[
    str, Field(pattern=r"^[A-Za-z]{2}$", description="e.g. FR; default: the server's")
]


class CallLogSourceIn(StrictIn):
    """Our call-log app: requests signed with a secret we generate (shown once)."""

    kind: Literal["calllog"]
    name: str = Field(min_length=1, max_length=200)
    default_region: Region | None = None


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


class WidgetSourceIn(StrictIn):
    """Our website chat widget: requests signed like the call-log app's (secret shown once)."""

    kind: Literal["widget"]
    name: str = Field(min_length=1, max_length=200)
    default_region: Region | None = None


class WhatsAppSourceIn(StrictIn):
    """A WhatsApp Cloud API phone number (Meta app webhooks)."""

    kind: Literal["whatsapp"]
    name: str = Field(min_length=1, max_length=200)
    phone_number_id: str | None = Field(
        None,
        pattern=r"^[0-9]{1,32}$",
        description="take only events of this business number (`metadata.phone_number_id`): "
        "needed when one Meta app, one app secret, serves several numbers",
    )
    app_secret: str = Field(
        min_length=1, max_length=200, description="the Meta app's secret (never shown again)"
    )
    verify_token: str = Field(
        min_length=8,
        max_length=200,
        description="the token typed in Meta's webhook settings (never shown again)",
    )
    default_region: Region | None = None


class TwilioMessagingSourceIn(StrictIn):
    """Twilio Programmable Messaging: SMS and WhatsApp, signed with the auth token."""

    kind: Literal["twilio"]
    name: str = Field(min_length=1, max_length=200)
    auth_token: str = Field(min_length=1, max_length=200, description="never shown again")
    public_base_url: HttpUrl = Field(
        description="scheme://host[:port] Twilio calls, e.g. https://crm.example.com; the "
        "signature covers this plus the request's path and query, whatever a proxy changes"
    )
    default_region: Region | None = None


class StripeSourceIn(StrictIn):
    """A Stripe webhook endpoint (payments of orders), signed with its signing secret."""

    kind: Literal["stripe"]
    name: str = Field(min_length=1, max_length=200)
    signing_secret: str = Field(
        pattern=r"^whsec_[A-Za-z0-9_+/=-]{1,200}$",
        description="the endpoint's signing secret, whsec_... (never shown again)",
    )
    default_region: Region | None = None


class PaymentSourceIn(StrictIn):
    """Any other payment system: our own payment JSON, signed like the call-log app's
    (secret shown once)."""

    kind: Literal["payment"]
    name: str = Field(min_length=1, max_length=200)
    default_region: Region | None = None


SourceIn = Annotated[
    CallLogSourceIn
    | TwilioVoiceSourceIn
    | WidgetSourceIn
    | WhatsAppSourceIn
    | TwilioMessagingSourceIn
    | StripeSourceIn
    | PaymentSourceIn,
    Field(discriminator="kind"),
]


class SourceOut(BaseModel):
    id: int
    kind: str
    name: str
    hook_url: str
    settings: dict[str, Any]
    created_at: datetime
    revoked_at: datetime | None


class SourceCreatedOut(SourceOut):
    secret: str | None = Field(
        description="the signing secret, shown only in this answer (null when the provider "
        "holds the secret, e.g. Twilio's auth token)"
    )


class SourceListOut(BaseModel):
    items: list[SourceOut]


# --- IMAP mailboxes -------------------------------------------------------------------


# The hosts a mailbox may be read from without TLS: this machine (the password would
# otherwise cross the network in clear).
LOOPBACK = r"(?:localhost|127(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}|::1)"


class MailboxIn(StrictIn):
    """An IMAP mailbox to read (for companies that cannot point an MX record at us)."""

    # The rules across fields, as the schema states them; `ingest.mailbox.mailboxes`
    # checks them (422 naming the field).
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {  # exactly one secret
                    "oneOf": [
                        {"required": ["password"], "properties": {"password": {"type": "string"}}},
                        {
                            "required": ["oauth2_token"],
                            "properties": {"oauth2_token": {"type": "string"}},
                        },
                    ]
                },
                {  # no TLS only on this machine
                    "if": {"properties": {"security": {"const": "none"}}},
                    "then": {"properties": {"host": {"pattern": f"^{LOOPBACK}$"}}},
                },
            ]
        }
    )

    name: str = Field("", max_length=200)
    host: Host
    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_whole)]
    security: Literal["tls", "starttls", "none"] = Field(
        description='"none" only for this machine (localhost, 127.x.x.x, ::1): elsewhere it '
        "would send the password in clear"
    )
    username: str = Field(min_length=1, max_length=320)
    password: str | None = Field(None, min_length=1, max_length=1000, description="never shown")
    oauth2_token: str | None = Field(
        None, min_length=1, max_length=4000, description="XOAUTH2 access token, never shown"
    )
    folder: str = Field("INBOX", min_length=1, max_length=255)
    processed_folder: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="move taken messages there; null (or `folder` itself): flag them "
        "\\Seen where they are",
    )


class MailboxOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    host: str
    port: int
    security: str
    username: str
    auth: str
    folder: str
    processed_folder: str | None
    uidvalidity: int | None
    last_uid: int
    created_at: datetime
    revoked_at: datetime | None
    last_ok_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None


class MailboxListOut(BaseModel):
    items: list[MailboxOut]


# --- call-log payloads -----------------------------------------------------------------


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


class HookRejection(BaseModel):
    index: int
    call_id: str | None = None
    message_id: str | None = None
    error: str


class HookAccepted(BaseModel):
    accepted: int = Field(
        description="calls or messages stored (a retry of a stored one counts again)"
    )
    ids: list[int] = Field(description="inbound item of each accepted input, in order")
    rejected: list[HookRejection] = Field(default_factory=list)
    ignored: str | None = Field(None, description="why nothing was stored, when so")


class AttachIn(StrictIn):
    card_id: DbId


Model = TypeVar("Model", bound=BaseModel)


def validate(model: type[Model], data: Any, path: str = "") -> Model | str:
    """`data` as `model`, or a message naming the first bad field (e.g. `calls[3].number`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = path
        for part in error["loc"]:
            where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
        return f"{where or 'body'}: {error['msg']}"
