"""The SMTP door's decisions (aiosmtpd handler), under `smtp_session`'s protocol. RCPT: an
unknown archive address -> 550 5.1.1, postmaster accepted (RFC 5321 4.5.1). DATA: the sender
checked (`verify`), the mail stored with our Received line on top, its id sent on, 250.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from crm_core import card_cases
from crm_core.db import read_only
from crm_core.models import utcnow
from ingest import inbound
from ingest.errors import StoreUnavailable
from ingest.inbound import GroupCommit, NewInput
from ingest.mailbox import postmaster
from ingest.mailbox.addresses import (
    decode_archive_address,
    encode_archive_address,
    hash_archive_token,
)
from ingest.mailbox.auth_results import without_our_results
from ingest.mailbox.loop_guard import trace_line
from ingest.mailbox.postmaster import postmaster_address
from ingest.mailbox.sender_auth import Arrival, Verdict
from ingest.mailbox.smtp_limits import DEFAULT_LIMITS, Clock, DoorLimits, HarvestGuard, peer_host
from ingest.mailbox.smtp_origin import brake_key, origin_of
from ingest.mailbox.smtp_replies import (
    ACCEPTED,
    BAD_ADDRESS,
    NOT_OUR_DOMAIN,
    RECIPIENT_OK,
    SERVICE_NOT_AVAILABLE,
    TOO_MANY_RECIPIENTS,
    TOO_MANY_UNKNOWN,
    TRY_LATER,
    UNKNOWN_ADDRESS,
)
from ingest.pipeline import send_stored

log = logging.getLogger(__name__)

MAX_ADDRESS_LENGTH = 254  # RFC 5321 section 4.5.3.1.3 (path) less the angle brackets

# A token hash that matches nothing: an address without a token is looked up anyway,
# so a refusal takes as long as an acceptance (SPEC: "same timing as a valid one").
_NO_TOKEN_HASH = hashlib.sha256(b"no token").hexdigest()

IsLiveToken = Callable[[str], bool]  # token hash -> the address exists and is live
Store = Callable[[list[NewInput]], Future[list[int]]]  # ids, once committed
Enqueue = Callable[[str, int], None]
Verify = Callable[[Arrival], Verdict]  # sender trust (sender_auth.SenderVerifier); blocking


class ArchiveHandler:
    """aiosmtpd handler; blocking work (database, broker) runs off the event loop."""

    def __init__(
        self,
        is_live_token: IsLiveToken,
        store: Store,
        enqueue: Enqueue,
        archive_domain: str,
        verify: Verify | None = None,
        *,
        max_recipients: int = DEFAULT_LIMITS.max_recipients,
        harvest: HarvestGuard | None = None,
    ) -> None:
        self._archive_domain = archive_domain.lower()
        self._is_live_token = is_live_token
        self._store = store
        self._enqueue = enqueue
        self._verify = verify
        self._max_recipients = max_recipients
        self._harvest = harvest

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        client = brake_key(session, envelope)
        if self._harvest is not None and client is not None and self._harvest.blocked(client):
            log.info("RCPT from %s refused: too many unknown archive addresses", client)
            return TOO_MANY_UNKNOWN  # before any lookup: valid or not, the same answer at once
        if len(envelope.rcpt_tos) >= self._max_recipients:
            return TOO_MANY_RECIPIENTS
        address = address.strip()
        if len(address) > MAX_ADDRESS_LENGTH or not address.isprintable() or " " in address:
            return BAD_ADDRESS
        to_postmaster = postmaster_address(address, self._archive_domain)
        if to_postmaster is not None:  # stored like any mail; processing puts it on no card
            if self._harvest is not None and client is not None:
                self._harvest.record_unknown(client)  # open to all: counted as a miss is
            envelope.rcpt_tos.append(to_postmaster)
            return RECIPIENT_OK
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
            if self._harvest is not None and client is not None:
                self._harvest.record_unknown(client)
            return UNKNOWN_ADDRESS
        # Stored in canonical form: one card, one recipient string, whatever the case or tag.
        envelope.rcpt_tos.append(encode_archive_address(str(token), self._archive_domain))
        return RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if len(raw) > postmaster.MAX_BYTES and any(
            map(postmaster.is_postmaster, envelope.rcpt_tos)
        ):
            return postmaster.TOO_BIG
        origin = origin_of(session, envelope, raw)
        meta: dict[str, Any] = {
            "peer": origin.address,
            "helo": origin.helo,
            # aiosmtpd keeps a null reverse-path as "<>"; "" means "a bounce" downstream.
            "mail_from": "" if envelope.mail_from in (None, "<>") else envelope.mail_from,
        }
        if origin.relay:
            meta.update(relay=origin.relay, relay_helo=origin.relay_helo, client_from=origin.via)
        received = self._without_our_results(raw)
        stored = received  # used if nothing checks
        if self._verify is not None:
            verdict = await self._verified(
                Arrival(raw, meta["peer"], meta["helo"], meta["mail_from"])
            )
            if verdict is not None and verdict.refusal:
                return verdict.refusal
            stored = stored if verdict is None else verdict.raw
        stored = self._traced(stored, received, session)
        meta["traced"] = True  # processing tells our line of this arrival from older ones
        inputs = [
            NewInput(
                channel="email",
                raw=stored,  # the dedupe key stays that of the bytes received (IMAP's too)
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
        await asyncio.to_thread(send_stored, self._enqueue, "email", ids)
        log.info(
            "mail from %s%s accepted for %d recipient(s): inbound %s",
            origin.address or "unknown client",
            f" via relay {origin.relay}" if origin.relay else "",
            len(ids),
            ids,
        )
        return ACCEPTED

    def _without_our_results(self, raw: bytes) -> bytes:
        """`raw` without Authentication-Results claiming our name, as `without_our_results`
        gives it, but only the part up to the first empty CRLF line is looked at (the
        header ends there or earlier; what follows is kept as is) and `raw` itself is
        returned when nothing is removed: a large message is neither cut into lines nor
        copied."""
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            return without_our_results(raw, self._archive_domain)
        end += 4
        head = raw[:end]
        cleaned = without_our_results(head, self._archive_domain)
        return raw if cleaned == head else cleaned + raw[end:]

    def _traced(self, stored: bytes, received: bytes, session: Session) -> bytes:
        """`stored` with our Received line (RFC 5321 section 4.4) just above the mail as
        received: below our Authentication-Results when there is one (first of all, as
        the checks' result), above everything the sender wrote."""
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if session.ssl is not None and session.extended_smtp:
            protocol += "S"  # RFC 3848
        line_end = received.find(b"\n")
        newline = b"\n" if line_end > 0 and received[line_end - 1 : line_end] != b"\r" else b"\r\n"
        trace = trace_line(
            self._archive_domain,
            session.host_name or "",
            peer_host(session.peer),
            protocol,
            utcnow(),
            newline,
        )
        ours = len(stored) - len(received)
        if ours >= 0 and stored.endswith(received):
            return stored[:ours] + trace + received
        return trace + stored

    async def _verified(self, arrival: Arrival) -> Verdict | None:
        """SPF/DKIM/DMARC off the event loop; a failure of the check itself loses no mail."""
        assert self._verify is not None
        try:
            return await asyncio.to_thread(self._verify, arrival)
        except Exception:
            log.exception("sender verification failed; storing the message unchecked")
            return None

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error: %r", error)
        return SERVICE_NOT_AVAILABLE


def make_archive_handler(
    commits: GroupCommit,
    enqueue: Enqueue,
    archive_domain: str,
    verify: Verify | None = None,
    *,
    limits: DoorLimits = DEFAULT_LIMITS,
    clock: Clock = time.monotonic,
) -> ArchiveHandler:
    """The handler wired to the database: live-address lookup and the inbound store."""

    def is_live_token(token_hash: str) -> bool:
        with read_only(commits.sessions) as session:
            return card_cases.card_for_archive_token(session, token_hash, utcnow()) is not None

    def store(inputs: list[NewInput]) -> Future[list[int]]:
        return inbound.submit(commits, inputs)

    return ArchiveHandler(
        is_live_token,
        store,
        enqueue,
        archive_domain,
        verify,
        max_recipients=limits.max_recipients,
        harvest=HarvestGuard(limits.unknown_rcpt_limit, limits.unknown_rcpt_window_seconds, clock),
    )
