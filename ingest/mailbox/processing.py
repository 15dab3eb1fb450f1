"""E-mail processing step: inbound id -> parsed mail -> `crm_core.services.record_email`.

Runs in a worker. One transaction claims the inbound item, records the mail on its card
and finishes the item, so a crash anywhere leaves the item waiting, never half-done.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from crm_core import services
from crm_core.db import read_only, unit_of_work
from crm_core.errors import CoreError
from crm_core.models import InboundItem, InboundStatus, utcnow
from ingest import inbound
from ingest.errors import RejectedInput
from ingest.mailbox.addresses import decode_archive_address, hash_archive_token
from ingest.mailbox.forwarding import find_original
from ingest.mailbox.parsing import ParsedEmail, parse_email

log = logging.getLogger(__name__)

MAX_RECEIVED_HEADERS = 30  # more hops than this is a mail loop (RFC 5321 section 6.3)


def process_email(sessions: sessionmaker[Session], inbound_id: int) -> None:
    # Parse before the transaction: a big or hostile message must not hold database locks.
    stored = inbound.load(sessions, inbound_id)
    if stored is None or stored.status != InboundStatus.RECEIVED.value:
        return
    mail: services.EmailRecord | None = None
    refusal = ""
    try:
        mail = _email_record(sessions, parse_email(stored.raw), stored)
    except RejectedInput as exc:
        refusal = exc.reason
    now = utcnow()
    with unit_of_work(sessions) as session:
        item = inbound.claim(session, inbound_id)
        if item is None:
            return
        try:
            if mail is None:
                raise RejectedInput(refusal)
            with session.begin_nested():
                card_id = _route(session, item, now)
                services.record_email(session, card_id, mail, item.id, now)
        except RejectedInput as exc:
            _reject(item, exc.reason)
            return
        except CoreError as exc:
            _reject(item, str(exc))
            return
        item.card_id = card_id
        inbound.finish(item, InboundStatus.PROCESSED)


def _reject(item: InboundItem, reason: str) -> None:
    log.info("inbound item %s rejected: %s", item.id, reason)
    inbound.finish(item, InboundStatus.REJECTED, reason)


def _route(session: Session, item: InboundItem, now: datetime) -> int:
    """Archive address -> exactly that card (SPEC "Which card?")."""
    token = decode_archive_address(item.recipient)
    card_id = (
        services.card_for_archive_token(session, hash_archive_token(token), now) if token else None
    )
    if card_id is None:
        raise RejectedInput(f"archive address {item.recipient} is unknown or revoked")
    return card_id


def _email_record(
    sessions: sessionmaker[Session], parsed: ParsedEmail, item: InboundItem
) -> services.EmailRecord:
    """The mail to record: the original message when it is a forward, else the mail itself;
    the header From is always who logged it."""
    _refuse_automatic(parsed, item)
    if parsed.sender is None:
        raise RejectedInput("the message has no From address")
    forwarder = parsed.sender[1]
    with read_only(sessions) as session:
        timezone = services.timezone_of(session, forwarder) or "UTC"
    original = find_original(parsed.text, parsed.subject, timezone)
    if original is None or original.sender is None:
        return services.EmailRecord(
            logged_by=forwarder,
            sender=_party(parsed.sender),
            occurred_at=parsed.date or item.received_at,
            subject=parsed.subject,
            text=parsed.text,
            message_id=parsed.message_id,
            date_header=parsed.header("date"),
            to=[_party(a) for a in parsed.to],
            cc=[_party(a) for a in parsed.cc],
            forwarded=False,
        )
    return services.EmailRecord(
        logged_by=forwarder,
        sender=_party(original.sender),
        occurred_at=original.date or parsed.date or item.received_at,
        subject=original.subject,
        text=original.text,
        note=original.note,
        message_id=parsed.message_id,
        date_header=parsed.header("date"),
        to=[_party(a) for a in original.to],
        cc=[_party(a) for a in original.cc],
        forwarded=True,
    )


def _party(address: tuple[str, str]) -> services.Party:
    return services.Party(name=address[0], address=address[1])


def _refuse_automatic(parsed: ParsedEmail, item: InboundItem) -> None:
    """Auto-replies, bulk mail, bounces and loops are not customer messages (RFC 3834)."""
    auto = parsed.header("auto-submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        raise RejectedInput(f"automatic message (Auto-Submitted: {auto})")
    precedence = parsed.header("precedence").strip().lower()
    if precedence in {"bulk", "junk", "list"}:
        raise RejectedInput(f"bulk message (Precedence: {precedence})")
    if item.meta.get("mail_from") == "":  # MAIL FROM:<> (RFC 5321 section 4.5.5)
        raise RejectedInput("null envelope sender (a bounce or notification)")
    if parsed.content_type == "multipart/report":
        raise RejectedInput("delivery status notification")
    header_block = item.raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    received = sum(1 for line in header_block.split(b"\n") if line[:9].lower() == b"received:")
    if received > MAX_RECEIVED_HEADERS:
        raise RejectedInput(f"mail loop ({received} Received headers)")
