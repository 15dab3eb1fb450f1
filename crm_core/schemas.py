"""Request and response shapes of the JSON API (pydantic), built from the core's models.

The HTTP layer validates with these and serialises through them; the use cases never see
HTTP.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    ValidationError,
)

from crm_core.models import Activity, Card, HistoryEntry


def _plausible(moment: datetime) -> datetime:
    if not 1970 <= moment.year <= 2200:
        raise ValueError("must be between 1970 and 2200")
    return moment


# A moment from outside (a call's start, a message's time): with its offset, and plausible,
# so that nothing accepted at the door overflows later in a worker.
Moment = Annotated[AwareDatetime, AfterValidator(_plausible)]
# A reference to a CRM user in a payload: an id (a database integer) or an e-mail.
UserRef = Annotated[int, Field(ge=1, le=2**31 - 1)] | EmailStr


class UserIn(BaseModel):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    timezone: str = "UTC"


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


class UserPatch(BaseModel):
    planned_lead_minutes: int | None = Field(
        None, ge=0, le=10080, description="N: minutes before a deadline that count as Planned"
    )
    timezone: str | None = None
    manager_id: int | None = Field(None, description="null removes the manager")


class CardPatch(BaseModel):
    title: str | None = Field(None, min_length=1, max_length=300)
    stage: str | None = Field(None, min_length=1, max_length=100)
    responsible_id: int | None = None
    outcome: Literal["won", "lost", "open"] | None = Field(
        None, description="won or lost closes the card; open reopens it"
    )


class CardIn(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    entity_type: str = Field(description="deal, lead, invoice or smart_process")
    stage: str = Field(min_length=1, max_length=100, description="pipeline stage = Kanban column")
    responsible_id: int
    contact_emails: list[EmailStr] = []
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


class LegalHoldIn(BaseModel):
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


class ErrorOut(BaseModel):
    detail: str


class ActivityIn(BaseModel):
    card_id: int | None = None
    card_ids: list[int] | None = Field(None, description="several cards: the first is the main one")
    type: str = Field(description="a name from the company's activity types")
    subject: str = Field("", max_length=500)
    description: str = ""
    responsible_id: int
    deadline: AwareDatetime | None = Field(None, description="ISO 8601 with offset, or null")
    status: str | None = None
    user_ids: list[int] = Field([], description="additional users")
    contact_ids: list[int] = []

    def all_card_ids(self) -> list[int]:
        return ([self.card_id] if self.card_id is not None else []) + (self.card_ids or [])


class ActivityPatch(BaseModel):
    """Fields to change; absent ones stay. `deadline: null` removes the deadline."""

    card_ids: list[int] | None = None
    type: str | None = None
    subject: str | None = Field(None, max_length=500)
    description: str | None = None
    responsible_id: int | None = None
    deadline: AwareDatetime | None = None
    status: str | None = None
    user_ids: list[int] | None = None
    contact_ids: list[int] | None = None


class CloseIn(BaseModel):
    status: str | None = Field(None, description="a closing status; default done")
    success: bool | None = Field(None, description="overrides the status's own success")


class BulkIn(BaseModel):
    ids: list[int] = Field(min_length=1, max_length=1000)
    action: Literal["delete", "edit", "assign", "done", "not_done"]
    responsible_id: int | None = Field(None, description="for assign")
    status: str | None = Field(None, description="for done: which closing status")
    changes: ActivityPatch | None = Field(None, description="for edit")


class BulkOut(BaseModel):
    changed: int


class ActivityOut(BaseModel):
    id: int
    card_id: int
    card_ids: list[int]
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


class CommentIn(BaseModel):
    text: str = Field(min_length=1, max_length=20_000)
    author_id: int | None = Field(None, description="default: the acting user")
    activity_id: int | None = None


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


class StatusSetting(BaseModel):
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


class SettingsPatch(BaseModel):
    counter_mode: Literal["item_responsible", "activity_responsible"] | None = None
    activity_types: list[str] | None = None
    activity_statuses: list[StatusSetting] | None = None
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
    Literal["deal", "lead", "invoice", "smart_process"],
    dict[Literal["read", "add", "edit", "delete"], Level],
]


class RoleIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    permissions: Grants = Field(
        description='per entity type and action a level, e.g. {"deal": {"read": "all", '
        '"edit": "own"}}; what is not given is "none"'
    )


class RolePatch(BaseModel):
    permissions: Grants


class RoleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    permissions: dict[str, dict[str, str]]


class RoleListOut(BaseModel):
    items: list[RoleOut]


class UserRolesIn(BaseModel):
    role_ids: list[int] = Field(max_length=100)


class UserRolesOut(BaseModel):
    role_ids: list[int]


class DepartmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    head_id: int | None = None


class DepartmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    head_id: int | None


class DepartmentListOut(BaseModel):
    items: list[DepartmentOut]


class UserAccessPatch(BaseModel):
    department_id: int | None = Field(None, description="null removes the department")
    is_admin: bool | None = None


class TokenIn(BaseModel):
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


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=20_000)


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


class CallLogSourceIn(BaseModel):
    """Our call-log app: requests signed with a secret we generate (shown once)."""

    kind: Literal["calllog"]
    name: str = Field(min_length=1, max_length=200)
    default_region: Region | None = None


class TwilioVoiceSourceIn(BaseModel):
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


class WidgetSourceIn(BaseModel):
    """Our website chat widget: requests signed like the call-log app's (secret shown once)."""

    kind: Literal["widget"]
    name: str = Field(min_length=1, max_length=200)
    default_region: Region | None = None


class WhatsAppSourceIn(BaseModel):
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


class TwilioMessagingSourceIn(BaseModel):
    """Twilio Programmable Messaging: SMS and WhatsApp, signed with the auth token."""

    kind: Literal["twilio"]
    name: str = Field(min_length=1, max_length=200)
    auth_token: str = Field(min_length=1, max_length=200, description="never shown again")
    public_base_url: HttpUrl = Field(
        description="scheme://host[:port] Twilio calls, e.g. https://crm.example.com; the "
        "signature covers this plus the request's path and query, whatever a proxy changes"
    )
    default_region: Region | None = None


class StripeSourceIn(BaseModel):
    """A Stripe webhook endpoint (payments of orders), signed with its signing secret."""

    kind: Literal["stripe"]
    name: str = Field(min_length=1, max_length=200)
    signing_secret: str = Field(
        pattern=r"^whsec_[A-Za-z0-9_+/=-]{1,200}$",
        description="the endpoint's signing secret, whsec_... (never shown again)",
    )
    default_region: Region | None = None


class PaymentSourceIn(BaseModel):
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


class MailboxIn(BaseModel):
    """An IMAP mailbox to read (for companies that cannot point an MX record at us)."""

    name: str = Field("", max_length=200)
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = Field(
        description='"none" only for a loopback host: it would send the password in clear'
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
        description="move taken messages there; null: flag them \\Seen where they are",
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


class AttachIn(BaseModel):
    card_id: int


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
