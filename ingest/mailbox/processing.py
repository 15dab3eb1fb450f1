"""The e-mail channel, run by `ingest.processing`: a stored mail -> parsed, its original sender
found, the loop limit applied (`recent_copies`) -> `crm_core.email_cases.record_email` on the
card of its archive address; mail to postmaster is left for the administrators (unmatched).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core import card_cases, email_cases, user_cases
from crm_core.models import InboundItem, InboundStatus
from ingest.errors import RejectedInput
from ingest.mailbox.addresses import decode_archive_address, hash_archive_token
from ingest.mailbox.forwarding import (
    Original,
    find_original,
    is_forward_subject,
    strip_subject_prefixes,
)
from ingest.mailbox.html_text import html_from, sanitize_html
from ingest.mailbox.loop_guard import (
    content_digest,
    header_fields,
    is_our_trace,
    message_id_hash,
    names_domain,
    report_digest,
)
from ingest.mailbox.parsing import Attachment, ParsedEmail, parse_email
from ingest.mailbox.postmaster import is_postmaster
from ingest.mailbox.postmaster import reason as postmaster_reason
from ingest.provider import Medium, Outcome
from ingest.settings import Settings

log = logging.getLogger(__name__)

# The item's reason when a mail looked like a forward but no original sender was found.
UNREAD_FORWARD = "the original sender could not be read: kept as your own mail"
MAX_RECEIVED_HEADERS = 30  # more hops than this is a mail loop (RFC 5321 section 6.3)


@dataclass(frozen=True)
class AttachmentLimits:
    per_file: int = 20 * 1024 * 1024
    per_message: int = 40 * 1024 * 1024


@dataclass(frozen=True)
class LoopLimit:
    """At most `count` copies of one message (the same Message-ID, or the same content under
    new Message-IDs: `loop_guard.content_digest`) to one archive address per `window`; the
    next copies are held (a forwarding rule going round, an auto-reply ping-pong). Distinct
    mails are never counted together, however many one person sends."""

    count: int = 5
    window: timedelta = timedelta(hours=2)


@dataclass(frozen=True)
class Bounce:
    """A delivery status notification (RFC 3464 `multipart/report`) put on a card: history
    only, never a customer message. It passes what any mail passes: its From must be a CRM
    user who may edit the card, and copies beyond the loop limit are held.

    The CRM sends no mail of its own, so no report answers a mail of ours: a report on a card
    is one a user forwarded (or redirected) there, e.g. the bounce of a mail they sent to the
    customer. One arriving from elsewhere (a stranger, a mail server) is refused as a
    stranger's mail is."""

    logged_by: str  # the From address
    subject: str
    text: str
    message_id: str = ""


@dataclass(frozen=True)
class Postmaster:
    """Mail to postmaster: left for the administrators, never put on a card."""

    why: str


Mail = email_cases.EmailRecord | Bounce | Postmaster


@dataclass(frozen=True)
class Prepared:
    mail: Mail
    loops: LoopLimit


EMAIL = Medium("email", "E-mail", "e-mail", "email", "E-mail")
BOUNCE = Medium("bounce", "Bounce", "bounce", "email", "E-mail", activity=False)


class EmailChannel:
    """Mail stored by the SMTP door or the IMAP poller, run by `ingest.processing`: parsed
    outside the transaction (a big or hostile message holds no lock), then put on the card
    of its archive address under one card lock."""

    name = "email"
    media = (EMAIL, BOUNCE)

    def prepare(self, session: Session, item: InboundItem, settings: Settings) -> Prepared:
        loops = LoopLimit(
            settings.loop_limit_count, timedelta(seconds=settings.loop_limit_window_seconds)
        )
        if is_postmaster(item.recipient):
            return Prepared(Postmaster(postmaster_reason(item.raw)), loops)
        limits = AttachmentLimits(settings.max_attachment_bytes, settings.max_attachments_bytes)
        return Prepared(_email_record(session, parse_email(item.raw), item, limits), loops)

    def annotate(self, item: InboundItem, prepared: Prepared) -> None:
        """Who logged it (kept whatever the outcome: "my forwards" lists it by sender)."""
        if not isinstance(prepared.mail, Postmaster):
            item.sender = prepared.mail.logged_by.lower()

    def place(
        self,
        session: Session,
        item: InboundItem,
        prepared: Prepared,
        now: datetime,
        card_id: int | None,
    ) -> Outcome:
        mail = prepared.mail
        if isinstance(mail, Postmaster):
            log.info("inbound item %s is mail to postmaster: left for the administrators", item.id)
            return Outcome(None, unmatched=mail.why)
        card_id = _route(session, item, now)
        # Counted under the card's lock: two mails processed at once cannot both see the
        # count below the limit.
        card = card_cases.lock_card(session, card_id)
        if isinstance(mail, Bounce):  # refused before the loop count, as a stranger's
            email_cases.archiver(session, card, mail.logged_by)
        _identify(item, mail)
        held = _held_as_loop(session, item, now, prepared.loops)
        if held is not None:
            return Outcome(None, held=held)
        if isinstance(mail, Bounce):
            email_cases.record_bounce(
                session, card, mail.logged_by, mail.subject, mail.text, item.id, now
            )
            return Outcome(card_id)
        email_cases.record_email(session, card, mail, item.id, now)
        return Outcome(card_id, note=mail.notice or None)


def _identify(item: InboundItem, mail: email_cases.EmailRecord | Bounce) -> None:
    """What identifies the message for the loop limit, kept on its item (from here on: a
    mail refused before, for its address or a stranger's report, is not counted)."""
    item.message_id_hash = message_id_hash(mail.message_id)
    if isinstance(mail, Bounce):
        item.content_digest = report_digest(mail.logged_by, mail.subject, mail.text)
    else:
        item.content_digest = content_digest(mail)


def _held_as_loop(
    session: Session, item: InboundItem, now: datetime, loops: LoopLimit
) -> str | None:
    """Why the message is held, if `loops.count` copies of it were already processed for
    this archive address within `loops.window` (its item was annotated with what identifies
    it); None to go on."""
    if item.meta.get("released"):  # an operator re-processed it after the hold
        return None
    copies = recent_copies(session, item, now - loops.window, loops.count)
    if copies < loops.count:
        return None
    return (
        "held as a possible mail loop: the same message (same Message-ID or same content) "
        f"was already processed {copies} times for this archive address in the last "
        f"{loops.window}"
    )


def recent_copies(session: Session, item: InboundItem, since: datetime, enough: int) -> int:
    """How many other inputs to `item`'s recipient, processed since `since`, are the same
    message as `item`: the same Message-ID (`message_id_hash`) or the same content
    (`content_digest`). Counted up to `enough` (the loop guard: a loop of thousands of
    copies costs each of them at most twice `enough` rows, not thousands); one query per
    sign, each on its index (ix_inbound_items_loop_message_id, ix_inbound_items_loop)."""
    found: set[int] = set()
    for column, value in (
        (InboundItem.message_id_hash, item.message_id_hash),
        (InboundItem.content_digest, item.content_digest),
    ):
        if value is None or len(found) >= enough:
            continue
        found.update(
            session.scalars(
                select(InboundItem.id)
                .where(
                    InboundItem.recipient == item.recipient,
                    column == value,
                    InboundItem.received_at >= since,
                    InboundItem.status == InboundStatus.PROCESSED.value,
                    InboundItem.id != item.id,
                )
                .limit(enough)
            )
        )
    return min(len(found), enough)


def _route(session: Session, item: InboundItem, now: datetime) -> int:
    """Archive address -> exactly that card (SPEC "Which card?")."""
    token = decode_archive_address(item.recipient)
    card_id = (
        card_cases.card_for_archive_token(session, hash_archive_token(token), now)
        if token
        else None
    )
    if card_id is None:
        raise RejectedInput(f"archive address {item.recipient} is unknown or revoked")
    return card_id


def _email_record(
    session: Session,
    parsed: ParsedEmail,
    item: InboundItem,
    limits: AttachmentLimits,
) -> email_cases.EmailRecord | Bounce:
    """The mail to record: the original message when it is a forward (inline, or attached
    as message/rfc822), else the mail itself; the header From is always who logged it."""
    report = parsed.content_type == "multipart/report"  # RFC 3464 delivery status notification
    # A report is automatic by nature (Auto-Submitted, a null sender): it is not refused for
    # that, as it is never recorded as a customer message; loop signs still refuse it.
    _refuse_automatic(parsed, item, loops_only=report)
    if parsed.from_problem:
        raise RejectedInput(parsed.from_problem)
    if parsed.sender is None:
        raise RejectedInput("the message has no From address")
    sender = parsed.sender
    if report:
        return Bounce(sender[1], parsed.subject, parsed.text, parsed.message_id)
    forwarder = sender[1]
    timezone = user_cases.timezone_of(session, forwarder) or "UTC"
    original = find_original(parsed.text, parsed.subject, timezone, html=parsed.html)
    files = list(parsed.attachments)
    if original is None and parsed.attached_messages:
        attached = parse_email(parsed.attached_messages[0])
        if attached.sender is not None:
            original = Original(
                sender=attached.sender,
                subject=attached.subject,
                text=attached.text,
                note=parsed.text.strip(),
                date=attached.date,
                to=attached.to,
                cc=attached.cc,
            )
            files += attached.attachments  # the original's files come with it
            parsed = replace(parsed, html=attached.html or parsed.html)
    kept, skipped = _within_limits(files, limits)
    notice = ""
    if original is None or original.sender is None:
        if is_forward_subject(parsed.subject):
            notice = UNREAD_FORWARD
        original = Original(
            sender=sender,
            subject=parsed.subject,
            text=parsed.text,
            note="",
            date=parsed.date,
            to=parsed.to,
            cc=parsed.cc,
        )
        forwarded = False
    else:
        forwarded = True
    return email_cases.EmailRecord(
        logged_by=forwarder,
        sender=_party(original.sender or sender),
        # A forward whose date cannot be read is shown at the forward's own date, and
        # the entry says so (date_known False).
        occurred_at=original.date or parsed.date or item.received_at,
        date_known=original.date is not None or not forwarded,
        subject=original.subject or strip_subject_prefixes(parsed.subject),
        text=original.text,
        note=original.note,
        message_id=parsed.message_id,
        date_header=parsed.header("date"),
        to=[_party(a) for a in original.to],
        cc=[_party(a) for a in original.cc],
        notice=notice,
        forwarded=forwarded,
        html=_original_html(parsed.html, original.text if forwarded else ""),
        attachments=kept,
        skipped_attachments=skipped,
    )


def _original_html(markup: str, original_text: str) -> str:
    """Sanitised HTML; for an inline forward, from the original's first line on."""
    clean = sanitize_html(markup)
    first_line = next((line for line in original_text.splitlines() if line.strip()), "")
    if first_line:
        return html_from(clean, first_line) or clean
    return clean


def _within_limits(
    files: list[Attachment], limits: AttachmentLimits
) -> tuple[list[email_cases.FileIn], list[dict[str, Any]]]:
    """Files within the per-file and per-message caps; the others listed with the reason."""
    kept: list[email_cases.FileIn] = []
    skipped: list[dict[str, Any]] = []
    total = 0
    for file in files:
        size = len(file.content)
        reason = ""
        if size > limits.per_file:
            reason = f"larger than the {limits.per_file} bytes allowed per file"
        elif total + size > limits.per_message:
            reason = f"the message's files exceed {limits.per_message} bytes"
        if reason:
            skipped.append({"file_name": file.file_name, "size": size, "reason": reason})
            continue
        total += size
        kept.append(email_cases.FileIn(file.file_name, file.media_type, file.content, file.inline))
    return kept, skipped


def _party(address: tuple[str, str]) -> email_cases.Party:
    return email_cases.Party(name=address[0], address=address[1])


def _refuse_automatic(parsed: ParsedEmail, item: InboundItem, loops_only: bool = False) -> None:
    """Auto-replies, bulk mail, bounces and loops are not customer messages (RFC 3834);
    with `loops_only` (a delivery report) only the signs of a loop are looked at.

    A loop shows as an X-Loop header naming our archive domain (the procmail and mailing
    list convention), our own Received line among the headers we received (the mail came
    through this door before), or more Received lines than a mail needs (RFC 5321 6.3)."""
    fields = header_fields(item.raw)
    for name, value in [] if loops_only else fields:  # a repeated header does not hide a mark
        auto = value.split(";")[0].strip().lower()
        if name == "auto-submitted" and auto and auto != "no":
            raise RejectedInput(f"automatic message (Auto-Submitted: {auto})")
        if name == "precedence" and value.strip().lower() in {"bulk", "junk", "list"}:
            raise RejectedInput(f"bulk message (Precedence: {value.strip().lower()})")
    if item.meta.get("mail_from") == "" and not loops_only:  # MAIL FROM:<> (RFC 5321 4.5.5)
        raise RejectedInput("null envelope sender (a bounce or notification)")
    domain = item.recipient.rpartition("@")[2].lower()
    for name, value in fields:
        if name == "x-loop" and names_domain(value, domain):
            raise RejectedInput(f"mail loop (X-Loop: {value[:200]})")
    # The door's own trace line of this arrival is the first Received (see smtp_handler).
    ours = 1 if item.meta.get("traced") else 0
    received = [value for name, value in fields if name == "received"][ours:]
    if any(is_our_trace(value, domain) for value in received):
        raise RejectedInput(
            "mail loop (it came through this archive door before: our Received line is "
            "among its headers)"
        )
    if len(received) > MAX_RECEIVED_HEADERS:
        raise RejectedInput(f"mail loop ({len(received)} Received headers)")


CHANNEL = EmailChannel()
