"""The SMTP door's protocol: aiosmtpd's SMTP with our limits (connection caps, idle close,
a session lifetime, junk commands), XFORWARD for trusted relays, and DATA streamed into a
`Spool`; the RCPT and DATA decisions are the handler's (`smtp_handler`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable
from typing import Any, AnyStr

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

from ingest.mailbox.smtp_handler import ArchiveHandler
from ingest.mailbox.smtp_limits import (
    ConnectionCount,
    DoorLimits,
    client_key,
    in_networks,
    peer_host,
)
from ingest.mailbox.smtp_origin import XFORWARD_EHLO, DoorEnvelope, DoorSession, parse_xforward
from ingest.mailbox.smtp_replies import (
    IDLE_TIMEOUT,
    SESSION_TOO_LONG,
    TEXT_LINE_TOO_LONG,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_JUNK,
    TOO_MUCH_DATA,
    TRY_LATER,
    WITH_ENHANCED_CODE,
    XFORWARD_IN_MAIL,
    XFORWARD_NO_HELO,
    XFORWARD_OK,
    XFORWARD_REFUSED,
    XFORWARD_SYNTAX,
)
from ingest.mailbox.spool import MemoryBudget, Spool, return_memory

log = logging.getLogger(__name__)


class ArchiveSMTP(SMTP):
    """aiosmtpd's session with our limits: connection caps, idle close with 421, a lifetime
    and a junk-command limit, line lengths of our own, DATA streamed into a spool, and
    enhanced status codes on aiosmtpd's refusals."""

    def __init__(
        self,
        handler: ArchiveHandler,
        limits: DoorLimits,
        connections: ConnectionCount,
        budget: MemoryBudget,
        **kwargs: Any,
    ) -> None:
        # aiosmtpd keeps these on the class, shared by every session (and reset by each new
        # one); ours are per session. The text line limit allows the transparent dot.
        self.command_size_limit = limits.max_command_bytes
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        self.line_length_limit = limits.max_line_bytes + 1
        self._connections = connections
        self._limits = limits
        self._budget = budget
        self._trusted_relays = limits.trusted_relays
        self._from_relay = False  # the connection comes from a trusted relay
        self._in_ehlo = False
        self._client: str | None = None
        self._admitted = False
        self._in_data = False
        self._junk_count = 0  # commands that moved no mail forward since the last mail accepted
        self._lifetime_timer: asyncio.TimerHandle | None = None
        self._storing = False  # the handler is storing a message: the lifetime waits for it
        self._lifetime_over = False
        super().__init__(handler, timeout=limits.idle_seconds, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client is None:  # not again for the TLS transport after STARTTLS
            peer = transport.get_extra_info("peername")
            self._client = client_key(peer)
            self._admitted = self._connections.admit(self._client)
            self._from_relay = in_networks(peer_host(peer), self._trusted_relays)
            self._lifetime_timer = self.loop.call_later(
                self._limits.session_max_seconds, self._end_of_lifetime
            )
        super().connection_made(transport)

    def _create_session(self) -> Session:
        return DoorSession(self.loop, self._from_relay)

    def _create_envelope(self) -> Envelope:
        return DoorEnvelope()

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted and self._client is not None:
            self._admitted = False
            self._connections.release(self._client)
        if self._lifetime_timer is not None:
            self._lifetime_timer.cancel()
            self._lifetime_timer = None
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
            reply = IDLE_TIMEOUT.format(host=self.hostname) + "\r\n"
            self.transport.write(reply.encode("ascii", "replace"))
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def _end_of_lifetime(self) -> None:
        """The session's time is up, whatever it is doing (NOOPs keep no session open;
        a DATA trickling in is cut), except while a message is being stored: that one is
        answered first."""
        if self._storing:
            self._lifetime_over = True
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
        self._in_ehlo = self._from_relay  # XFORWARD is offered to trusted relays only
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    # Junk: commands that move no mail forward. Each one, and each refused command (a 4xx
    # or 5xx answer), counts; a mail accepted starts the count again (as Postfix's
    # smtpd_junk_command_limit: a relay's RSET between mails is no abuse). At the limit the
    # session is answered 421 4.7.0 and closed. aiosmtpd itself closes after 5 unknown
    # commands (502 5.5.1).

    async def _counted_as_junk(self, command: Awaitable[None]) -> None:
        before = self._junk_count
        await command
        if self._junk_count == before:  # not already counted as a refusal
            self._count_junk()

    def _count_junk(self) -> None:
        self._junk_count += 1
        if self._junk_count >= self._limits.max_junk_commands:
            log.info("SMTP session of %s closed: %d junk commands", self._client, self._junk_count)
            self._close_with(TOO_MANY_JUNK)

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str) -> None:
        await self._counted_as_junk(super().smtp_NOOP(arg))

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        await self._counted_as_junk(super().smtp_RSET(arg))

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str) -> None:
        await self._counted_as_junk(super().smtp_HELP(arg))

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        await self._counted_as_junk(super().smtp_VRFY(arg))

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
                refusal = await self._receive_text(spool)
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
            self._junk_count = 0
        await self.push(status)
        if self._lifetime_over:
            self._end_of_lifetime()

    async def _receive_text(self, spool: Spool) -> str | None:
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

    @syntax("XFORWARD attribute=value ...", when="_from_relay")
    async def smtp_XFORWARD(self, arg: str) -> None:
        """Postfix's XFORWARD: the relay's own client, for this mail transaction."""
        if not self._from_relay:
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
            await super().push(WITH_ENHANCED_CODE.get(status, status))
        else:
            await super().push(status)
        code = status[:3] if isinstance(status, str) else status[:3].decode("ascii", "replace")
        if code[:1] in ("4", "5") and code != "421":  # a refusal (421: we are closing)
            self._count_junk()
