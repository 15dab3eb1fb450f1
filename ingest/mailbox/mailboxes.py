"""IMAP mailboxes on the database side: register one (its secret sealed), list, revoke; the
poller's cursor and health; and `take`, which routes one fetched message by the archive
token in its recipients and stores it raw. No IMAP here: `imap_poller.py` talks to servers.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import getaddresses

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_core import card_cases
from crm_core.db import read_only, unit_of_work
from crm_core.errors import InvalidInput, NotFound
from crm_core.models import Mailbox, utcnow
from ingest import inbound
from ingest.inbound import GroupCommit
from ingest.mailbox.addresses import (
    decode_archive_address,
    encode_archive_address,
    hash_archive_token,
)
from ingest.sealing import Sealer
from ingest.wire import LOOPBACK, check_host

log = logging.getLogger(__name__)

SECURITY = ("tls", "starttls", "none")
# Where the archive address of a mail fetched from a catch-all mailbox can be: the
# envelope recipient the delivering server wrote down first, then the visible ones.
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc")


@dataclass(frozen=True)
class MailboxConfig:
    """What a poller needs to connect: the settings and the unsealed secret."""

    id: int
    host: str
    port: int
    security: str
    username: str
    auth: str  # password | oauth2
    secret: str
    folder: str
    processed_folder: str | None


@dataclass(frozen=True)
class Cursor:
    uidvalidity: int | None
    last_uid: int


@dataclass(frozen=True)
class Taken:
    item_ids: list[int]  # one per card (one rejected item when no card)
    rejected: str | None  # why it cannot go to a card (then it stays in the mailbox)


def is_loopback(host: str) -> bool:
    """This machine, as the API's schema says it (`ingest.wire.LOOPBACK`)."""
    return re.fullmatch(LOOPBACK, host) is not None


def register(
    session: Session,
    sealer: Sealer,
    *,
    name: str,
    host: str,
    port: int,
    security: str,
    username: str,
    password: str | None,
    oauth2_token: str | None,
    folder: str,
    processed_folder: str | None,
) -> Mailbox:
    if security not in SECURITY:
        raise InvalidInput(f"security: must be one of {', '.join(SECURITY)}")
    try:  # the API's schema checks it too; the CLI comes straight here
        check_host(host)
    except ValueError as exc:
        raise InvalidInput(f"host: {exc}") from None
    if security == "none" and not is_loopback(host):
        raise InvalidInput(
            'security: "none" would send the password in clear; it is only allowed for a '
            "loopback host (127.0.0.1, ::1, localhost)"
        )
    if (password is None) == (oauth2_token is None):
        raise InvalidInput("password or oauth2_token: give exactly one of them")
    if processed_folder == folder:  # moving a message where it is: leave it there, \Seen
        processed_folder = None
    mailbox = Mailbox(
        name=name or f"{username}@{host}",
        host=host,
        port=port,
        security=security,
        username=username,
        auth="password" if password is not None else "oauth2",
        sealed=sealer.seal({"secret": password if password is not None else str(oauth2_token)}),
        folder=folder,
        processed_folder=processed_folder,
        last_uid=0,
    )
    session.add(mailbox)
    session.flush()
    return mailbox


def list_mailboxes(session: Session) -> list[Mailbox]:
    return list(session.scalars(select(Mailbox).order_by(Mailbox.id)))


def get(session: Session, mailbox_id: int) -> Mailbox:
    mailbox = session.get(Mailbox, mailbox_id)
    if mailbox is None:
        raise NotFound(f"mailbox {mailbox_id} does not exist")
    return mailbox


def revoke(session: Session, mailbox_id: int, now: datetime) -> None:
    """Stop reading it (its poller stops within the service's reload period)."""
    mailbox = get(session, mailbox_id)
    if mailbox.revoked_at is None:
        mailbox.revoked_at = now


def active_ids(sessions: sessionmaker[Session]) -> list[int]:
    with read_only(sessions) as session:
        return list(
            session.scalars(
                select(Mailbox.id).where(Mailbox.revoked_at.is_(None)).order_by(Mailbox.id)
            )
        )


def config(
    sessions: sessionmaker[Session], sealer: Sealer, mailbox_id: int
) -> MailboxConfig | None:
    """The live mailbox's connection settings; None once it is revoked."""
    with read_only(sessions) as session:
        mailbox = session.get(Mailbox, mailbox_id)
        if mailbox is None or mailbox.revoked_at is not None:
            return None
        return MailboxConfig(
            id=mailbox.id,
            host=mailbox.host,
            port=mailbox.port,
            security=mailbox.security,
            username=mailbox.username,
            auth=mailbox.auth,
            secret=sealer.unseal(mailbox.sealed)["secret"],
            folder=mailbox.folder,
            processed_folder=mailbox.processed_folder,
        )


def cursor(sessions: sessionmaker[Session], mailbox_id: int) -> Cursor:
    with read_only(sessions) as session:
        mailbox = get(session, mailbox_id)
        return Cursor(mailbox.uidvalidity, mailbox.last_uid)


def move_cursor(
    sessions: sessionmaker[Session], mailbox_id: int, uidvalidity: int, last_uid: int
) -> None:
    """Everything up to `last_uid` of this UIDVALIDITY is stored (or moved past, reported)."""
    with unit_of_work(sessions) as session:
        mailbox = get(session, mailbox_id)
        mailbox.uidvalidity, mailbox.last_uid = uidvalidity, last_uid


def report(sessions: sessionmaker[Session], mailbox_id: int, error: str | None) -> None:
    """The poller's health, shown by `GET /api/mailboxes/{id}`: last success or last error."""
    now = utcnow()
    with unit_of_work(sessions) as session:
        mailbox = session.get(Mailbox, mailbox_id)
        if mailbox is None:
            return
        if error is None:
            mailbox.last_ok_at = now
            mailbox.last_error = None
        else:
            mailbox.last_error, mailbox.last_error_at = error[:2000], now


def take(
    commits: GroupCommit,
    mailbox_id: int,
    uidvalidity: int,
    uid: int,
    raw: bytes,
    archive_domain: str,
) -> Taken:
    """Store one fetched message: one item per card whose live archive token is among its
    recipients (as the SMTP door makes one per recipient), or one kept as rejected with the
    reason. The same bytes for the same card (a refetch after a crash, a new UIDVALIDITY,
    the same mail by SMTP) are one item."""
    meta = {"mailbox_id": mailbox_id, "uidvalidity": uidvalidity, "uid": uid}
    tokens, why = _route(commits.sessions, raw)
    if not tokens:
        digest = hashlib.sha256(raw).hexdigest()
        rejected = f"{why}; the message stays in the mailbox"
        [item_id] = inbound.store(
            commits,
            [
                inbound.NewInput(
                    channel="email",
                    raw=raw,
                    dedupe_key=f"imap-unrouted:{mailbox_id}:{digest}",
                    meta=meta,
                    rejected=rejected,
                )
            ],
        )
        return Taken([item_id], rejected)
    recipients = [encode_archive_address(token, archive_domain) for token in tokens]
    ids = inbound.store(
        commits,
        [
            inbound.NewInput(
                channel="email",
                raw=raw,
                dedupe_key=inbound.email_key(recipient, raw),
                recipient=recipient,
                meta=meta,
            )
            for recipient in recipients
        ],
    )
    return Taken(ids, None)


def _route(sessions: sessionmaker[Session], raw: bytes) -> tuple[list[str], str]:
    """The live archive tokens among the recipients (each card once), or why there is none."""
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        addresses = [
            address
            for name in RECIPIENT_HEADERS
            for _display, address in getaddresses([str(v) for v in headers.get_all(name, [])])
        ]
    except Exception as exc:  # any defect of the header block: the message cannot be read
        return [], f"cannot be parsed: {type(exc).__name__}: {exc}"
    tokens = [t for t in (decode_archive_address(a) for a in addresses) if t]
    if not tokens:
        return [], "no archive address in " + ", ".join(RECIPIENT_HEADERS)
    now = utcnow()
    live: dict[int, str] = {}
    with read_only(sessions) as session:
        for token in dict.fromkeys(tokens):
            card = card_cases.card_for_archive_token(session, hash_archive_token(token), now)
            if card is not None:
                live.setdefault(card, token)
    if not live:
        return [], "its archive address is unknown or revoked"
    return list(live.values()), ""
