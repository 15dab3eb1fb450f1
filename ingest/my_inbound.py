"""The forwarder hears back (`GET /api/me/inbound`): a user's own inputs that processing
refused, held or failed after the front door's yes, or kept with a notice, each with its
reason in plain words. Read-only, after `ingest.mailbox.processing` has finished them."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.errors import NotFound
from crm_core.models import ArchiveAddress, InboundItem, InboundStatus, User
from ingest import inbound
from ingest.http.schemas.inbound import MyInboundOut
from ingest.mailbox.addresses import decode_archive_address, hash_archive_token

# What `?status=` may ask for; without it, all of them and the processed inputs with a notice.
OwnStatus = Literal["rejected", "held", "failed"]
OWN_STATUSES: tuple[OwnStatus, ...] = ("rejected", "held", "failed")
# Read of each listed input's raw bytes for its Subject: headers, not whole messages.
HEAD_BYTES = 64 * 1024
SUBJECT_CHARS = 300
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def own_inputs(
    session: Session, user_id: int, status: OwnStatus | None, limit: int, now: datetime
) -> list[MyInboundOut]:
    """The user's inputs (see `inbound.list_own`), newest first, ready to show."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    statuses = [status] if status else list(OWN_STATUSES)
    items = inbound.list_own(session, user.email, statuses, notices=status is None, limit=limit)
    heads = inbound.raw_heads(session, [item.id for item in items], HEAD_BYTES)
    zone = _zone(user.timezone)
    return [
        MyInboundOut(
            id=item.id,
            status=item.status,
            received_at=item.received_at,
            finished_at=item.finished_at,
            recipient=item.recipient,
            subject=subject_of(heads.get(item.id, b"")),
            reason=item.reason,
            reason_text=reason_text(
                item, lambda address: _address_state(session, address, zone, now)
            ),
        )
        for item in items
    ]


def subject_of(head: bytes) -> str | None:
    """The Subject of a message's first bytes (RFC 2047 words decoded, on one line), or None."""
    if not head:
        return None
    try:
        value = BytesHeaderParser(policy=policy.default).parsebytes(head).get("subject")
        text = " ".join(str(value).split()) if value is not None else ""
    except Exception:  # hostile headers: the subject is a courtesy, never an error
        return None
    return text[:SUBJECT_CHARS] or None


# Reasons of refusals by their shape (ingest.mailbox.processing, parsing, crm_core.services),
# in words for the person who sent the mail.
_REFUSALS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), words)
    for pattern, words in (
        (r"^sender \S+ may not edit card", "you are not allowed to edit this card"),
        (
            r"^sender \S+ is not a CRM user",
            "your address was not a CRM user's when the mail arrived",
        ),
        (r"^cannot parse the message", "the message could not be read"),
        (
            r"^the (From header|From address|message has \d+ From headers|message has no From)",
            "the sender (From line) could not be read: it must be exactly one address",
        ),
        (r"^automatic message", "refused as an automatic message (an auto-reply or notice)"),
        (r"^bulk message", "refused as bulk or mailing-list mail"),
        (r"^null envelope sender", "refused as a bounce or notification (no return address)"),
        (r"^mail loop", "refused as a mail loop (it went through too many servers)"),
    )
)
_REVOKED = re.compile(r"^archive address \S* ?is unknown or revoked", re.IGNORECASE)
# A processed input's notice about the forwarded original's sender (it could not be read).
_ORIGINAL_SENDER = re.compile(
    r"\b(original sender|original's sender|sender of the original)\b", re.IGNORECASE
)


def reason_text(item: InboundItem, address_state: Callable[[str], str]) -> str:
    """The stored reason in plain words; a reason of no known shape is shown as stored.
    `address_state` says what became of an archive address (revoked when, replaced...)."""
    reason = (item.reason or "").strip()
    if item.status == InboundStatus.FAILED.value:
        tries = "attempt" if item.attempts == 1 else "attempts"
        return f"failed after {item.attempts} {tries}: we are looking into it"
    if item.status == InboundStatus.PROCESSED.value:
        if _ORIGINAL_SENDER.search(reason):
            return "the original sender could not be read: kept as your own mail"
        return f"on its card, with a note: {reason}"
    if item.status == InboundStatus.HELD.value:
        if "loop" in reason.lower():
            return "held as a possible mail loop: an administrator can release it"
        return f"held: {reason}" if reason else "held"
    if _REVOKED.match(reason):
        return address_state(item.recipient)
    for pattern, words in _REFUSALS:
        if pattern.match(reason):
            return words
    return f"refused: {reason}" if reason else "refused"


def _address_state(session: Session, address: str, zone: ZoneInfo, now: datetime) -> str:
    """What became of an archive address that refused a mail, dated in the user's zone."""
    token = decode_archive_address(address)
    found = (
        session.scalar(
            select(ArchiveAddress).where(ArchiveAddress.token_hash == hash_archive_token(token))
        )
        if token
        else None
    )
    if found is None:
        return "no card has this archive address: check it on the card"
    if found.revoked_at is not None:
        return f"address revoked on {_day(found.revoked_at, zone, now)}"
    if found.expires_at is not None:
        return (
            f"address replaced by a newer one: it stopped working on "
            f"{_day(found.expires_at, zone, now)}"
        )
    return "the archive address did not work when the mail arrived"


def _day(moment: datetime, zone: ZoneInfo, now: datetime) -> str:
    """`3 Dec`, with the year when it is not this one (in the user's zone)."""
    local, today = moment.astimezone(zone), now.astimezone(zone)
    day = f"{local.day} {_MONTHS[local.month - 1]}"
    return day if local.year == today.year else f"{day} {local.year}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
