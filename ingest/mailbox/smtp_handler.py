"""The SMTP front door (aiosmtpd; the only module importing it).

RCPT: unknown or revoked archive address -> 550 5.1.1, early and cheaply. DATA: the raw
message is committed to the inbound store, then its id is sent to the worker, then 250.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from crm_core import services
from crm_core.db import read_only
from crm_core.models import utcnow
from ingest import inbound
from ingest.errors import StoreUnavailable
from ingest.inbound import NewInput
from ingest.mailbox.addresses import (
    decode_archive_address,
    encode_archive_address,
    hash_archive_token,
)

log = logging.getLogger(__name__)

# Replies (RFC 3463 enhanced codes). None carries internal detail.
UNKNOWN_ADDRESS = "550 5.1.1 No such archive address"
NOT_OUR_DOMAIN = "550 5.7.1 Relaying denied"
BAD_ADDRESS = "501 5.1.3 Bad recipient address syntax"
MAX_ADDRESS_LENGTH = 254  # RFC 5321 section 4.5.3.1.3 (path) less the angle brackets
TRY_LATER = "451 4.3.0 Temporary failure, please try again later"
ACCEPTED = "250 2.0.0 Message accepted"

# A token hash that matches nothing: an address without a token is looked up anyway,
# so a refusal takes as long as an acceptance (SPEC: "same timing as a valid one").
_NO_TOKEN_HASH = hashlib.sha256(b"no token").hexdigest()

IsLiveToken = Callable[[str], bool]  # token hash -> the address exists and is live
Store = Callable[[list[NewInput]], Future[list[int]]]  # ids, once committed
Enqueue = Callable[[str, int], None]


class ArchiveHandler:
    """aiosmtpd handler; blocking work (database, broker) runs off the event loop."""

    def __init__(
        self, is_live_token: IsLiveToken, store: Store, enqueue: Enqueue, archive_domain: str
    ) -> None:
        self._archive_domain = archive_domain.lower()
        self._is_live_token = is_live_token
        self._store = store
        self._enqueue = enqueue

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        address = address.strip()
        if len(address) > MAX_ADDRESS_LENGTH or not address.isprintable() or " " in address:
            return BAD_ADDRESS
        if address.rpartition("@")[2].lower() != self._archive_domain:
            return NOT_OUR_DOMAIN
        token = decode_archive_address(address)
        token_hash = hash_archive_token(token) if token else _NO_TOKEN_HASH
        try:
            live = await asyncio.to_thread(self._is_live_token, token_hash)
        except Exception:
            log.exception("archive address lookup failed")
            return TRY_LATER
        if not (live and token):
            return UNKNOWN_ADDRESS
        # Stored in canonical form: one card, one recipient string, whatever the case or tag.
        envelope.rcpt_tos.append(encode_archive_address(str(token), self._archive_domain))
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        meta: dict[str, Any] = {
            "peer": _peer(session.peer),
            "helo": session.host_name or "",
            # aiosmtpd keeps a null reverse-path as "<>"; "" means "a bounce" downstream.
            "mail_from": "" if envelope.mail_from in (None, "<>") else envelope.mail_from,
        }
        inputs = [
            NewInput(
                channel="email",
                raw=raw,
                recipient=recipient,
                dedupe_key=inbound.email_key(recipient, raw),
                meta=meta,
            )
            for recipient in envelope.rcpt_tos
        ]
        try:
            ids = await asyncio.wrap_future(self._store(inputs))
        except StoreUnavailable:
            log.exception("inbound store failed; answering 451")
            return TRY_LATER
        except Exception:
            log.exception("unexpected error while storing; answering 451")
            return TRY_LATER
        await asyncio.to_thread(inbound.hand_over, self._enqueue, "email", ids)
        return ACCEPTED

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error: %r", error)
        return "421 4.3.0 Service not available, closing connection"


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


async def start_smtp_server(
    handler: ArchiveHandler, host: str, port: int, *, max_message_bytes: int, hostname: str
) -> asyncio.Server:
    """Listen on host:port; SIZE is advertised and larger messages get 552 (RFC 1870)."""
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=hostname,
            ident="crm-ingest ESMTP",
            loop=loop,
        )

    return await loop.create_server(protocol, host=host, port=port)


def make_archive_handler(
    sessions: sessionmaker[OrmSession], enqueue: Enqueue, archive_domain: str
) -> ArchiveHandler:
    """The handler wired to the database: live-address lookup and the inbound store."""

    def is_live_token(token_hash: str) -> bool:
        with read_only(sessions) as session:
            return services.card_for_archive_token(session, token_hash, utcnow()) is not None

    def store(inputs: list[NewInput]) -> Future[list[int]]:
        return inbound.submit(sessions, inputs)

    return ArchiveHandler(is_live_token, store, enqueue, archive_domain)
