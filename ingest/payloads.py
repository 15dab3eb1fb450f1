"""Reading webhook bodies, shared by the call-log and chat payload modules: JSON, Twilio's
form encoding, validation against a schema, phone numbers. Each failure is RejectedInput
naming the field, so a hook answers 422 and a worker marks the input rejected.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from crm_core import schemas
from crm_core.errors import InvalidInput
from crm_core.phones import normalize_phone
from ingest.errors import RejectedInput


def load_json(raw: bytes, where: str = "body") -> Any:
    try:
        return json.loads(raw)
    # ValueError covers bad UTF-8, bad JSON and integers of more than 4,300 digits;
    # RecursionError a document nested thousands deep.
    except (ValueError, RecursionError) as exc:
        raise RejectedInput(f"{where}: not JSON ({str(exc)[:200]})") from None


def valid(model: type[schemas.Model], data: Any, path: str = "") -> schemas.Model:
    """`data` as `model`, or RejectedInput naming the first bad field."""
    parsed = schemas.validate(model, data, path)
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
