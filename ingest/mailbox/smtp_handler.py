"""The SMTP front door (aiosmtpd; the only module importing it).

RCPT: unknown or revoked archive address -> 550 5.1.1, early and cheaply; postmaster is
accepted (RFC 5321 section 4.5.1: processing leaves it for the administrators). DATA: the text
streamed into a spool (memory, then a temporary file: `spool`), the sender checked (`verify`),
the raw message committed to the inbound store with our Received line on top, its id sent
on, 250. A session ends after a lifetime, or after too many commands that deliver nothing.

Behind a relay (CRM_SMTP_TRUSTED_RELAYS, e.g. Postfix) the "client" of the checks, the
unknown-address brake and the logs is the relay's own client: as Postfix's XFORWARD gives it
(http://www.postfix.org/XFORWARD_README.html; offered to trusted relays only), else as the
relay's topmost Received line names it.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AnyStr

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import sessionmaker

from crm_core import services
from crm_core.db import read_only
from crm_core.models import utcnow
from ingest import inbound
from ingest.errors import StoreUnavailable
from ingest.inbound import NewInput
from ingest.mailbox import postmaster
from ingest.mailbox.addresses import (
    decode_archive_address,
    encode_archive_address,
    hash_archive_token,
)
from ingest.mailbox.loop_guard import trace_line
from ingest.mailbox.postmaster import postmaster_address
from ingest.mailbox.sender_auth import Arrival, Verdict, received_client, without_our_results
from ingest.mailbox.spool import SPOOL_SUBDIR, MemoryBudget, Spool, return_memory
from ingest.settings import IPNetwork, Settings, SettingsError

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
TOO_MUCH_DATA = "552 5.3.4 Message size exceeds fixed limit"
# {host}: our hostname. Written as the session is closed (the idle one, 4.4.2, likewise).
SESSION_TOO_LONG = "421 4.4.2 {host} Session time limit reached, closing connection"
TOO_MANY_JUNK = "421 4.7.0 {host} Too many commands without mail, closing connection"
# XFORWARD (Postfix): the attributes we take, and our answers (as Postfix's smtpd words them).
XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
XFORWARD_EHLO = "250-XFORWARD " + " ".join(XFORWARD_ATTRIBUTES)
XFORWARD_OK = "250 2.0.0 Ok"
XFORWARD_REFUSED = "550 5.7.0 Error: insufficient authorization"
XFORWARD_NO_HELO = "503 5.5.1 Error: send HELO/EHLO first"
XFORWARD_IN_MAIL = "503 5.5.1 Error: MAIL transaction in progress"
XFORWARD_SYNTAX = "501 5.5.4 Syntax: XFORWARD attribute=value..."
_XFORWARD_UNAVAILABLE = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
_XFORWARD_MAX_LENGTH = {  # Postfix's own limits (XFORWARD_README)
    "NAME": 255,
    "ADDR": 64,
    "PORT": 5,
    "PROTO": 64,
    "HELO": 255,
    "IDENT": 64,
    "SOURCE": 6,
}
# aiosmtpd's own answers to the same cases, without enhanced status codes (RFC 2034).
_ENHANCED = {
    "500 Command line too long": COMMAND_TOO_LONG,
    "500 Line too long (see RFC5321 4.5.3.1.6)": TEXT_LINE_TOO_LONG,
    "530 Must issue a STARTTLS command first": MUST_STARTTLS,
    "552 Error: message size exceeds fixed maximum message size": TOO_MUCH_DATA,
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
    trusted_relays: tuple[IPNetwork, ...] = ()
    session_max_seconds: float = 1800.0
    max_junk_commands: int = 50
    spool_threshold_bytes: int = 256 * 1024
    max_memory_bytes: int = 64 * 1024 * 1024
    spool_dir: Path = Path("var") / SPOOL_SUBDIR

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
            trusted_relays=s.trusted_relay_networks,
            session_max_seconds=s.smtp_session_max_seconds,
            max_junk_commands=s.smtp_max_junk_commands,
            spool_threshold_bytes=s.smtp_spool_threshold_bytes,
            max_memory_bytes=s.smtp_max_memory_bytes,
            spool_dir=s.data_dir / SPOOL_SUBDIR,
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


def xtext_decode(value: str) -> str:
    """RFC 3461 section 4 xtext: "+" and two upper-case hex digits stand for one octet.

    Raises ValueError on a character xtext does not allow or a bad "+" escape."""
    out = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char == "+":
            digits = value[index + 1 : index + 3]
            if len(digits) != 2 or any(d not in "0123456789ABCDEFabcdef" for d in digits):
                raise ValueError(f"bad xtext escape {value[index : index + 3]!r}")
            out.append(int(digits, 16))
            index += 3
            continue
        if not ("!" <= char <= "~") or char == "=":
            raise ValueError(f"character {char!r} not allowed in xtext")
        out.append(ord(char))
        index += 1
    return out.decode("utf-8", errors="replace")


def parse_xforward(arg: str) -> dict[str, str | None]:
    """The attributes of one XFORWARD command ("NAME=mx.example ADDR=192.0.2.1 ..."):
    upper-case names, xtext-decoded values, None for [UNAVAILABLE] or [TEMPUNAVAIL].

    Raises ValueError naming what is wrong (unknown attribute, bad value, none given)."""
    attributes: dict[str, str | None] = {}
    for part in arg.split():
        name, sep, raw_value = part.partition("=")
        name = name.upper()
        if not sep or name not in XFORWARD_ATTRIBUTES:
            raise ValueError(f"bad XFORWARD attribute name: {name or part}")
        if raw_value.upper() in _XFORWARD_UNAVAILABLE:
            attributes[name] = None
            continue
        value = xtext_decode(raw_value)
        if len(value) > _XFORWARD_MAX_LENGTH[name] or not value.isprintable():
            raise ValueError(f"bad XFORWARD {name} value")
        attributes[name] = value
    if not attributes:
        raise ValueError("XFORWARD needs attribute=value")
    return attributes


def forwarded_ip(value: str | None) -> str | None:
    """XFORWARD's ADDR as an IP address ("IPV6:" prefix dropped), None when it is not one."""
    if not value:
        return None
    if value[:5].upper() == "IPV6:":
        value = value[5:]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class DoorSession(Session):
    """aiosmtpd's session, knowing whether the connection comes from a trusted relay."""

    def __init__(self, loop: asyncio.AbstractEventLoop, relay: bool) -> None:
        super().__init__(loop)
        self.relay = relay


class DoorEnvelope(Envelope):
    """aiosmtpd's envelope with the XFORWARD attributes of its transaction: sent before MAIL,
    they end with it (DATA done, RSET or a new EHLO), as with Postfix's own smtpd."""

    def __init__(self) -> None:
        super().__init__()
        self.xforward: dict[str, str | None] = {}


@dataclass(frozen=True)
class Origin:
    """Who sent a mail: the client itself, or behind a trusted relay the relay's client."""

    address: str  # IP address ("" if the relay did not know it)
    helo: str
    relay: str = ""  # the trusted relay's address, "" for a direct client
    relay_helo: str = ""
    via: str = "direct"  # direct, xforward, received (the relay's Received line) or relay


def _is_relay(session: Session) -> bool:
    return isinstance(session, DoorSession) and session.relay


def _xforward(envelope: Envelope) -> dict[str, str | None]:
    return envelope.xforward if isinstance(envelope, DoorEnvelope) else {}


def brake_key(session: Session, envelope: Envelope) -> str | None:
    """Whom the unknown-address brake counts: the client, or behind a trusted relay the
    client XFORWARD names; None (not counted) for relayed mail without a client address."""
    if not _is_relay(session):
        return client_key(session.peer)
    address = forwarded_ip(_xforward(envelope).get("ADDR"))
    return client_key(address) if address else None


def origin_of(session: Session, envelope: Envelope, raw: bytes) -> Origin:
    """The mail's client: XFORWARD's ADDR and HELO for a trusted relay, else its topmost
    Received line's, else the relay itself (logged: SPF then judges the relay)."""
    peer, helo = _peer(session.peer), session.host_name or ""
    if not _is_relay(session):
        return Origin(peer, helo)
    forwarded = _xforward(envelope)
    if "ADDR" in forwarded:
        address = forwarded_ip(forwarded["ADDR"]) or ""
        return Origin(address, forwarded.get("HELO") or "", peer, helo, "xforward")
    named = received_client(raw)
    if named is not None:
        return Origin(named[0], named[1], peer, helo, "received")
    log.warning(
        "mail from trusted relay %s names no client (no XFORWARD, no Received line); "
        "checking the relay itself",
        peer,
    )
    return Origin(peer, helo, peer, helo, "relay")


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
            return "250 2.1.5 OK"
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
        return "250 2.1.5 OK"

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
        await asyncio.to_thread(inbound.hand_over, self._enqueue, "email", ids)
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


def _in_networks(host: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


class _Door(SMTP):
    """aiosmtpd's session with our limits: connection caps, idle close with 421, a lifetime
    and a junk-command limit, line lengths of our own, DATA streamed into a spool, and
    enhanced status codes on aiosmtpd's refusals."""

    def __init__(
        self,
        handler: ArchiveHandler,
        limits: DoorLimits,
        count: ConnectionCount,
        budget: MemoryBudget,
        **kwargs: Any,
    ) -> None:
        # aiosmtpd keeps these on the class, shared by every session (and reset by each new
        # one); ours are per session. The text line limit allows the transparent dot.
        self.command_size_limit = limits.max_command_bytes
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        self.line_length_limit = limits.max_line_bytes + 1
        self._count = count
        self._limits = limits
        self._budget = budget
        self._trusted_relays = limits.trusted_relays
        self._relay = False  # the connection comes from a trusted relay
        self._in_ehlo = False
        self._client: str | None = None
        self._admitted = False
        self._in_data = False
        self._junk = 0  # commands that moved no mail forward since the last mail accepted
        self._lifetime: asyncio.TimerHandle | None = None
        self._storing = False  # the handler is storing a message: the lifetime waits for it
        self._expired = False
        super().__init__(handler, timeout=limits.idle_seconds, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client is None:  # not again for the TLS transport after STARTTLS
            peer = transport.get_extra_info("peername")
            self._client = client_key(peer)
            self._admitted = self._count.admit(self._client)
            self._relay = _in_networks(_peer(peer), self._trusted_relays)
            self._lifetime = self.loop.call_later(
                self._limits.session_max_seconds, self._lifetime_cb
            )
        super().connection_made(transport)

    def _create_session(self) -> Session:
        return DoorSession(self.loop, self._relay)

    def _create_envelope(self) -> Envelope:
        return DoorEnvelope()

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted and self._client is not None:
            self._admitted = False
            self._count.release(self._client)
        if self._lifetime is not None:
            self._lifetime.cancel()
            self._lifetime = None
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        # aiosmtpd counts idle time from the last command; a long DATA still arriving is not
        # idle (RFC 5321 4.5.3.2.6 times each block). Commands still need whole lines.
        if self._in_data and self._timeout_handle is not None:
            self._reset_timeout()
        super().data_received(data)

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

    def _lifetime_cb(self) -> None:
        """The session's time is up, whatever it is doing (NOOPs keep no session open;
        a DATA trickling in is cut), except while a message is being stored: that one is
        answered first."""
        if self._storing:
            self._expired = True
            return
        log.info("SMTP session of %s closed: lifetime reached", self._client)
        self._close_with(SESSION_TOO_LONG)

    def _close_with(self, reply: str) -> None:
        if isinstance(self.transport, asyncio.WriteTransport):
            line = reply.format(host=self.hostname) + "\r\n"
            self.transport.write(line.encode("ascii", "replace"))
            self.transport.close()

    async def smtp_EHLO(self, hostname: str) -> None:
        self.command_size_limits.clear()  # aiosmtpd adds the extensions' share at each EHLO
        self._in_ehlo = self._relay  # XFORWARD is offered to trusted relays only
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    # Junk: commands that move no mail forward. Each one, and each refused command (a 4xx
    # or 5xx answer), counts; a mail accepted starts the count again (as Postfix's
    # smtpd_junk_command_limit: a relay's RSET between mails is no abuse). At the limit the
    # session is answered 421 4.7.0 and closed. aiosmtpd itself closes after 5 unknown
    # commands (502 5.5.1).

    async def _junk_command(self, command: Awaitable[None]) -> None:
        before = self._junk
        await command
        if self._junk == before:  # not already counted as a refusal
            self._count_junk()

    def _count_junk(self) -> None:
        self._junk += 1
        if self._junk >= self._limits.max_junk_commands:
            log.info("SMTP session of %s closed: %d junk commands", self._client, self._junk)
            self._close_with(TOO_MANY_JUNK)

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str) -> None:
        await self._junk_command(super().smtp_NOOP(arg))

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        await self._junk_command(super().smtp_RSET(arg))

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str) -> None:
        await self._junk_command(super().smtp_HELP(arg))

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        await self._junk_command(super().smtp_VRFY(arg))

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA (1.4), with the text streamed into a `Spool` instead of held as a
        list of lines: the same checks, answers and dot-unstuffing (RFC 5321 4.5.2)."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        spool = Spool(self._limits.spool_dir, self._limits.spool_threshold_bytes, self._budget)
        try:
            self._in_data = True
            try:
                refusal = await self._receive(spool)
            finally:
                self._in_data = False
            if refusal is not None:
                spool.close()
                self._set_post_data_state()  # type: ignore[no-untyped-call]
                await self.push(refusal)
                return
            # Read back whole for the checks and the store (which take bytes), as many at
            # once as the memory budget allows: the others wait, on disk, for their turn.
            self._storing = True
            try:
                async with self._budget.hold(spool.size):
                    raw = spool.getvalue()
                    spool.close()
                    self.envelope.content = self.envelope.original_content = raw
                    del raw  # the envelope holds the one copy, dropped with it below
                    status = await self._call_handler_hook("DATA")
                    self._set_post_data_state()  # type: ignore[no-untyped-call]
            finally:
                self._storing = False
                if spool.size > self._limits.spool_threshold_bytes:
                    return_memory()  # a large message's copies are freed: give them back
        finally:
            spool.close()
        status = "250 OK" if status is MISSING else status
        if status.startswith("250"):
            self._junk = 0
        await self.push(status)
        if self._expired:
            self._lifetime_cb()

    async def _receive(self, spool: Spool) -> str | None:
        """Read the text up to CRLF "." CRLF into `spool`; the refusal to answer, if any. A
        refused message is read to its end (RFC 5321 4.2.5) without keeping anything."""
        size, limit = 0, self.data_size_limit
        refusal: str | None = None
        in_long_line = False  # within a line longer than the reader's limit
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                log.info("connection of %s lost during DATA", self._client)
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as exc:
                refusal = refusal or TEXT_LINE_TOO_LONG
                line = await self._reader.read(exc.consumed)
            if not in_long_line and line == b".\r\n":
                break
            whole_line = line.endswith(b"\r\n")
            size += len(line)
            if refusal is None and limit and size > limit:
                refusal = TOO_MUCH_DATA
            elif refusal is None and len(line) > self.line_length_limit:
                refusal = TEXT_LINE_TOO_LONG
            if refusal is None:
                try:
                    spool.write(line[1:] if line.startswith(b".") else line)
                except OSError:  # e.g. the disk is full: the client tries again later
                    log.exception("cannot spool a message; answering 451")
                    refusal = TRY_LATER
            if refusal is not None:
                spool.close()  # what was kept goes at once; nothing more is kept
            in_long_line = not whole_line
        return refusal

    @syntax("XFORWARD attribute=value ...", when="_relay")
    async def smtp_XFORWARD(self, arg: str) -> None:
        """Postfix's XFORWARD: the relay's own client, for this mail transaction."""
        if not self._relay:
            log.warning("XFORWARD from %s refused: not a trusted relay", self._client)
            await self.push(XFORWARD_REFUSED)
            return
        if self.session is None or not self.session.host_name:
            await self.push(XFORWARD_NO_HELO)
            return
        if self.envelope is None or self.envelope.mail_from is not None:
            await self.push(XFORWARD_IN_MAIL)
            return
        try:
            attributes = parse_xforward(arg)
        except ValueError as exc:
            log.info("XFORWARD from %s refused: %s", self._client, exc)
            await self.push(XFORWARD_SYNTAX)
            return
        if isinstance(self.envelope, DoorEnvelope):
            self.envelope.xforward.update(attributes)
        await self.push(XFORWARD_OK)

    async def push(self, status: AnyStr) -> None:
        if self._in_ehlo and status == "250 HELP":  # the last line of the EHLO answer
            await super().push(XFORWARD_EHLO)
        if isinstance(status, str):
            await super().push(_ENHANCED.get(status, status))
        else:
            await super().push(status)
        code = status[:3] if isinstance(status, str) else status[:3].decode("ascii", "replace")
        if code[:1] in ("4", "5") and code != "421":  # a refusal (421: we are closing)
            self._count_junk()


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
    budget = MemoryBudget(limits.max_memory_bytes)  # shared by this server's sessions

    def protocol() -> SMTP:
        return _Door(
            handler,
            limits,
            count,
            budget,
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
