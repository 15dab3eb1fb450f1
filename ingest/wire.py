"""Shared wire types: how a value from outside (an API request, a webhook body) is read and
checked, for the HTTP layer and the provider payload modules alike (it imports neither);
a webhook body that cannot be read is RejectedInput naming the field (422, or rejected)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import zoneinfo
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

import email_validator
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)

from crm_core.errors import InvalidInput
from crm_core.phones import normalize_phone
from ingest.errors import RejectedInput


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


def whole(value: Any) -> Any:
    """JSON Schema's integer is any number without a fractional part: 7.0 is 7."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A row's id as the API takes it: a positive database integer (32 bits on PostgreSQL). In a
# body (`StrictIn`) a JSON number without a fraction, never a boolean or a text; `whole`
# comes after the bounds so that the schema shows them.
DbId = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(whole)]
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
# A country for reading phone numbers without their international prefix.
Region = Annotated[
    str, Field(pattern=r"^[A-Za-z]{2}$", description="e.g. FR; default: the server's")
]
# Text that is not blank: a character Python's str.isspace() is false for. The class names
# those characters one by one, so that every regex engine reads it alike (`\s` differs).
NOT_BLANK = "[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# A host to connect to: a DNS name of letters, digits and hyphens (RFC 1123), or an IP
# address (IPv4 is a DNS name's shape too; IPv6 without brackets or zone).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*"
# The hosts a mailbox may be read from without TLS: this machine (the password would
# otherwise cross the network in clear).
LOOPBACK = r"(?:localhost|127(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}|::1)"


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


# --- reading webhook bodies (the call-log, chat and payment payload modules) -------------


def load_json(raw: bytes, where: str = "body") -> Any:
    try:
        return json.loads(raw)
    # ValueError covers bad UTF-8, bad JSON and integers of more than 4,300 digits;
    # RecursionError a document nested thousands deep.
    except (ValueError, RecursionError) as exc:
        raise RejectedInput(f"{where}: not JSON ({str(exc)[:200]})") from None


def valid(model: type[Model], data: Any, path: str = "") -> Model:
    """`data` as `model`, or RejectedInput naming the first bad field."""
    parsed = validate(model, data, path)
    if isinstance(parsed, str):
        raise RejectedInput(parsed)
    return parsed


def form_params(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RejectedInput(f"body: not form-encoded parameters ({exc})") from None


def number_field(raw: str, region: str, field: str) -> str:
    """A phone number in E.164, or RejectedInput naming the field."""
    try:
        return normalize_phone(raw, region)
    except InvalidInput as exc:
        raise RejectedInput(f"{field}: {exc}") from None


def clean(text: str) -> str:
    """Text as a database column takes it: without NUL characters (PostgreSQL refuses them)."""
    return text.replace("\x00", "")
