"""Beside the pipeline, over HTTP (`GET /api/me/inbound`): a user's own inputs that processing
refused, held or failed, or kept with a notice, read from the inbound store (`list_own`,
`raw_heads`) after `ingest.processing` finished them, each with its reason in plain words."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, LargeBinary, and_, func, or_, select
from sqlalchemy.orm import Session, defer

from crm_core.errors import NotFound
from crm_core.models import ArchiveAddress, InboundItem, InboundStatus, User
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
    """The user's inputs (see `list_own`), newest first, ready to show."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    statuses = [status] if status else list(OWN_STATUSES)
    items = list_own(session, user.email, statuses, notices=status is None, limit=limit)
    heads = raw_heads(session, [item.id for item in items], HEAD_BYTES)
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


def list_own(
    session: Session, email: str, statuses: Collection[str], notices: bool, limit: int
) -> list[InboundItem]:
    """The e-mail inputs sent by `email` in one of `statuses` (and, with `notices`, the
    processed ones that carry a reason), newest first, without their raw bytes.

    Sent by: the From address processing read (`sender`, stored lower-case), or, when it
    could read none (a From it refused, a failed attempt rolled back), the envelope sender
    the SMTP door kept in `meta["mail_from"]`; compared case-insensitively."""
    email = email.strip().lower()
    envelope = func.lower(InboundItem.meta["mail_from"].as_string())
    wanted: list[ColumnElement[bool]] = [InboundItem.status.in_(list(statuses))]
    if notices:
        wanted.append(
            and_(
                InboundItem.status == InboundStatus.PROCESSED.value,
                InboundItem.reason.is_not(None),
                InboundItem.reason != "",
            )
        )
    return list(
        session.scalars(
            select(InboundItem)
            .options(defer(InboundItem.raw))
            .where(
                InboundItem.channel == "email",
                or_(
                    InboundItem.sender == email,
                    and_(InboundItem.sender.is_(None), envelope == email),
                ),
                or_(*wanted),
            )
            .order_by(InboundItem.received_at.desc(), InboundItem.id.desc())
            .limit(limit)
        )
    )


def raw_heads(session: Session, ids: Collection[int], size: int) -> dict[int, bytes]:
    """The first `size` bytes of each item's raw input (b"" once retention deleted it):
    enough for its headers, without reading whole messages out of the database."""
    if not ids:
        return {}
    head = func.substr(InboundItem.raw, 1, size, type_=LargeBinary)
    rows = session.execute(select(InboundItem.id, head).where(InboundItem.id.in_(list(ids))))
    return {item_id: bytes(data or b"") for item_id, data in rows}


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
