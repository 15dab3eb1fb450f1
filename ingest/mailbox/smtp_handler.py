"""The SMTP front door (aiosmtpd; the only module importing it).

RCPT: unknown or revoked archive address -> 550 5.1.1, early and cheaply. DATA: the sender
checked (`verify`), the raw message committed to the inbound store with our Received line on
top, its id sent on, 250.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, AnyStr

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
from ingest.mailbox.loop_guard import trace_line
from ingest.mailbox.sender_auth import Arrival, Verdict, without_our_results
from ingest.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# Replies (RFC 3463 enhanced codes). None carries internal detail.
UNKNOWN_ADDRESS = "550 5.1.1 No such archive address"
NOT_OUR_DOMAIN = "550 5.7.1 Relaying denied"
BAD_ADDRESS = "501 5.1.3 Bad recipient address syntax"
MAX_ADDRESS_LENGTH = 254  # RFC 5321 section 4.5.3.1.3 (path) less the angle brackets
TRY_LATER = "451 4.3.0 Temporary failure, please try again later"
ACCEPTED = "250 2.0.0 Message accepted"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_MANY_UNKNOWN = "450 4.7.1 Too many unknown recipients, try later"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try later"
COMMAND_TOO_LONG = "500 5.5.2 Line too long"
TEXT_LINE_TOO_LONG = "500 5.5.2 Line too long in message text"
MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
# aiosmtpd's own answers to the same cases, without enhanced status codes (RFC 2034).
_ENHANCED = {
    "500 Command line too long": COMMAND_TOO_LONG,
    "500 Line too long (see RFC5321 4.5.3.1.6)": TEXT_LINE_TOO_LONG,
    "530 Must issue a STARTTLS command first": MUST_STARTTLS,
}

# A token hash that matches nothing: an address without a token is looked up anyway,
# so a refusal takes as long as an acceptance (SPEC: "same timing as a valid one").
_NO_TOKEN_HASH = hashlib.sha256(b"no token").hexdigest()

IsLiveToken = Callable[[str], bool]  # token hash -> the address exists and is live
Store = Callable[[list[NewInput]], Future[list[int]]]  # ids, once committed
Enqueue = Callable[[str, int], None]
Verify = Callable[[Arrival], Verdict]  # sender trust (sender_auth.SenderVerifier); blocking
Clock = Callable[[], float]  # seconds, monotonic


@dataclass(frozen=True)
class DoorLimits:
    """The door's limits; see the `smtp_*` settings for what each does."""

    max_command_bytes: int
    max_line_bytes: int
    max_recipients: int
    max_connections: int
    max_connections_per_ip: int
    idle_seconds: float
    unknown_rcpt_limit: int
    unknown_rcpt_window_seconds: float

    @classmethod
    def from_settings(cls, s: Settings) -> DoorLimits:
        return cls(
            max_command_bytes=s.smtp_max_command_bytes,
            max_line_bytes=s.smtp_max_line_bytes,
            max_recipients=s.smtp_max_recipients,
            max_connections=s.smtp_max_connections,
            max_connections_per_ip=s.smtp_max_connections_per_ip,
            idle_seconds=s.smtp_idle_seconds,
            unknown_rcpt_limit=s.smtp_unknown_rcpt_limit,
            unknown_rcpt_window_seconds=s.smtp_unknown_rcpt_window_seconds,
        )


DEFAULT_LIMITS = DoorLimits.from_settings(Settings.model_construct())  # no environment read


def client_key(peer: Any) -> str:
    """Who a limit counts: the IP address, or the /64 of an IPv6 one (one host's usual share)."""
    host = _peer(peer)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class HarvestGuard:
    """Unknown-address attempts per client over a sliding window (directory harvesting).

    Kept in this process's memory: each SMTP process counts on its own and a restart
    forgets. A brake on guessing, not an account; a client at the limit is refused at once.
    """

    MAX_CLIENTS = 10_000  # clients tracked at once; beyond, the oldest are forgotten

    def __init__(self, limit: int, window_seconds: float, clock: Clock = time.monotonic) -> None:
        self._limit = limit
        self._window = window_seconds
        self._clock = clock
        self._misses: dict[str, collections.deque[float]] = {}

    def blocked(self, client: str) -> bool:
        """The client reached the limit within the window (0 = never)."""
        misses = self._misses.get(client)
        if not self._limit or misses is None:
            return False
        self._expire(misses, self._clock())
        if not misses:
            del self._misses[client]
        return len(misses) >= self._limit

    def record_unknown(self, client: str) -> None:
        if not self._limit:
            return
        now = self._clock()
        if client not in self._misses and len(self._misses) >= self.MAX_CLIENTS:
            for key, misses in list(self._misses.items()):
                self._expire(misses, now)
                if not misses:
                    del self._misses[key]
            while len(self._misses) >= self.MAX_CLIENTS:
                del self._misses[next(iter(self._misses))]
        self._misses.setdefault(client, collections.deque()).append(now)

    def _expire(self, misses: collections.deque[float], now: float) -> None:
        while misses and misses[0] <= now - self._window:
            misses.popleft()


class ConnectionCount:
    """Open sessions, in all and per client; used from the server's event loop only."""

    def __init__(self, total: int, per_client: int) -> None:
        self._total_cap = total
        self._client_cap = per_client
        self._open: collections.Counter[str] = collections.Counter()

    def admit(self, client: str) -> bool:
        if self._open.total() >= self._total_cap:
            return False
        if self._client_cap and self._open[client] >= self._client_cap:
            return False
        self._open[client] += 1
        return True

    def release(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


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
        client = client_key(session.peer)
        if self._harvest is not None and self._harvest.blocked(client):
            return TOO_MANY_UNKNOWN  # before any lookup: valid or not, the same answer at once
        if len(envelope.rcpt_tos) >= self._max_recipients:
            return TOO_MANY_RECIPIENTS
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
            if self._harvest is not None:
                self._harvest.record_unknown(client)
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
        received = without_our_results(raw, self._archive_domain)
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
        await asyncio.to_thread(inbound.hand_over, self._enqueue, "email", ids)
        return ACCEPTED

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
            _peer(session.peer),
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
        return "421 4.3.0 Service not available, closing connection"


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


class _Door(SMTP):
    """aiosmtpd's session with our limits: connection caps, idle close with 421, line
    lengths of our own and enhanced status codes on aiosmtpd's refusals."""

    def __init__(
        self, handler: ArchiveHandler, limits: DoorLimits, count: ConnectionCount, **kwargs: Any
    ) -> None:
        # aiosmtpd keeps these on the class, shared by every session (and reset by each new
        # one); ours are per session. The text line limit allows the transparent dot.
        self.command_size_limit = limits.max_command_bytes
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        self.line_length_limit = limits.max_line_bytes + 1
        self._count = count
        self._client: str | None = None
        self._admitted = False
        self._in_data = False
        super().__init__(handler, timeout=limits.idle_seconds, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client is None:  # not again for the TLS transport after STARTTLS
            self._client = client_key(transport.get_extra_info("peername"))
            self._admitted = self._count.admit(self._client)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted and self._client is not None:
            self._admitted = False
            self._count.release(self._client)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        # aiosmtpd counts idle time from the last command; a long DATA still arriving is not
        # idle (RFC 5321 4.5.3.2.6 times each block). Commands still need whole lines.
        if self._in_data and self._timeout_handle is not None:
            self._reset_timeout()
        super().data_received(data)

    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False

    async def _handle_client(self) -> None:
        if not self._admitted:
            log.warning("SMTP connection from %s refused: too many connections", self._client)
            await self.push(TOO_MANY_CONNECTIONS)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    def _timeout_cb(self) -> None:
        if isinstance(self.transport, asyncio.WriteTransport):
            reply = f"421 4.4.2 {self.hostname} Idle timeout, closing connection\r\n"
            self.transport.write(reply.encode("ascii", "replace"))
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def smtp_EHLO(self, hostname: str) -> None:
        self.command_size_limits.clear()  # aiosmtpd adds the extensions' share at each EHLO
        await super().smtp_EHLO(hostname)

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            await super().push(_ENHANCED.get(status, status))
        else:
            await super().push(status)


def load_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The STARTTLS context from CRM_SMTP_TLS_CERT_FILE/KEY_FILE, None when both are empty.

    Raises SettingsError naming the variable when a file cannot be read or used, so the
    service stops at start rather than at a client's first STARTTLS.
    """
    cert, key = settings.smtp_tls_cert_file, settings.smtp_tls_key_file
    if not cert and not key:
        if settings.smtp_require_tls:
            raise SettingsError(
                "CRM_SMTP_REQUIRE_TLS: needs CRM_SMTP_TLS_CERT_FILE and CRM_SMTP_TLS_KEY_FILE"
            )
        return None
    for name, path in (("CRM_SMTP_TLS_CERT_FILE", cert), ("CRM_SMTP_TLS_KEY_FILE", key)):
        if not path:
            raise SettingsError(f"{name}: empty, but the other TLS file is set")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise SettingsError(
            f"CRM_SMTP_TLS_CERT_FILE/CRM_SMTP_TLS_KEY_FILE: cannot use {cert} with {key}: {exc}"
        ) from None
    return context


async def start_smtp_server(
    handler: ArchiveHandler,
    host: str,
    port: int,
    *,
    max_message_bytes: int,
    hostname: str,
    limits: DoorLimits = DEFAULT_LIMITS,
    tls: ssl.SSLContext | None = None,
    require_tls: bool = False,
) -> asyncio.Server:
    """Listen on host:port; SIZE is advertised and larger messages get 552 (RFC 1870).

    STARTTLS is offered when `tls` is given (and required before MAIL with require_tls).
    The end of DATA is only CRLF "." CRLF (aiosmtpd >= 1.4.5): bare LFs, LF "." CRLF or
    CRLF "." LF are message text, stored as such, not refused: we are the last hop, so no
    server after us can read them as an end (SMTP smuggling needs two readings).
    """
    loop = asyncio.get_running_loop()
    count = ConnectionCount(limits.max_connections, limits.max_connections_per_ip)

    def protocol() -> SMTP:
        return _Door(
            handler,
            limits,
            count,
            data_size_limit=max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=hostname,
            ident="crm-ingest ESMTP",
            tls_context=tls,
            require_starttls=require_tls,
            loop=loop,
        )

    return await loop.create_server(protocol, host=host, port=port)


def make_archive_handler(
    sessions: sessionmaker[OrmSession],
    enqueue: Enqueue,
    archive_domain: str,
    verify: Verify | None = None,
    *,
    limits: DoorLimits = DEFAULT_LIMITS,
    clock: Clock = time.monotonic,
) -> ArchiveHandler:
    """The handler wired to the database: live-address lookup and the inbound store."""

    def is_live_token(token_hash: str) -> bool:
        with read_only(sessions) as session:
            return services.card_for_archive_token(session, token_hash, utcnow()) is not None

    def store(inputs: list[NewInput]) -> Future[list[int]]:
        return inbound.submit(sessions, inputs)

    return ArchiveHandler(
        is_live_token,
        store,
        enqueue,
        archive_domain,
        verify,
        max_recipients=limits.max_recipients,
        harvest=HarvestGuard(limits.unknown_rcpt_limit, limits.unknown_rcpt_window_seconds, clock),
    )
