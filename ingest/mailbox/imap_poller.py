"""IMAP front door (the only module importing imapclient): one poller per mailbox reads
new messages past its UID cursor with BODY.PEEK[], stores each raw (`mailboxes.take`),
sends its id to the worker, and only then flags it \\Seen or moves it; IDLE where the
server has it (RFC 2177), polling otherwise; reconnects with backoff.

A message that cannot be routed is stored as rejected (visible with its reason) and left
as it is in the mailbox; the cursor moves past it so the others go on.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from ingest import logs
from ingest.inbound import GroupCommit
from ingest.mailbox import mailboxes
from ingest.pipeline import send_stored
from ingest.sealing import Sealer

log = logging.getLogger(__name__)

Enqueue = Callable[[str, int], None]
FETCH_BATCH = 20
MAX_BACKOFF_SECONDS = 60.0
SEEN = b"\\Seen"


class Poller:
    """Reads one mailbox until `stop` is set. `after_fetch(uid)` is a seam for fault tests
    (a crash between the fetch and the store)."""

    def __init__(
        self,
        commits: GroupCommit,
        sealer: Sealer,
        mailbox_id: int,
        enqueue: Enqueue,
        archive_domain: str,
        *,
        poll_seconds: float,
        idle_seconds: float = 600.0,
        ca_file: str | None = None,
        stop: threading.Event | None = None,
        after_fetch: Callable[[int], None] | None = None,
    ) -> None:
        self.commits, self.sessions = commits, commits.sessions
        self.sealer = sealer
        self.mailbox_id = mailbox_id
        self.enqueue = enqueue
        self.archive_domain = archive_domain
        self.poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds
        self.ca_file = ca_file
        self.stop = stop or threading.Event()
        self.after_fetch = after_fetch
        self.idling = threading.Event()  # set while waiting in IDLE (tests and health)
        self.backoff = 1.0

    def run(self) -> None:
        """Connect, catch up, wait for news; on any error report it, back off, reconnect.
        The backoff restarts only after a whole catch-up worked, so an error that follows
        every login (a folder that cannot be opened, the database down) is not retried
        every second."""
        self.backoff = 1.0
        while not self.stop.is_set():
            try:
                config = mailboxes.config(self.sessions, self.sealer, self.mailbox_id)
                if config is None:
                    log.info("mailbox %s is revoked: its poller stops", self.mailbox_id)
                    return
                with self._connected(config) as client:
                    self._serve(client, config)
            except Exception as exc:
                self.idling.clear()
                error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "mailbox %s: %s; reconnecting in %.0f s", self.mailbox_id, error, self.backoff
                )
                try:
                    mailboxes.report(self.sessions, self.mailbox_id, error)
                except Exception:
                    log.exception("mailbox %s: cannot record the error", self.mailbox_id)
                self.stop.wait(self.backoff)
                self.backoff = min(self.backoff * 2, MAX_BACKOFF_SECONDS)

    @contextmanager
    def _connected(self, config: mailboxes.MailboxConfig) -> Iterator[IMAPClient]:
        context = ssl.create_default_context()  # the system's CAs...
        if self.ca_file:
            context.load_verify_locations(self.ca_file)  # ...and the company's own
        client = IMAPClient(
            config.host,
            port=config.port,
            ssl=config.security == "tls",
            ssl_context=context,
            timeout=30,
        )
        try:
            if config.security == "starttls":
                client.starttls(context)
            if config.auth == "oauth2":
                client.oauth2_login(config.username, config.secret)
            else:
                client.login(config.username, config.secret)
            yield client
        finally:
            try:
                client.logout()
            except Exception:  # the connection may be gone already; nothing to tell
                client.shutdown()

    def _serve(self, client: IMAPClient, config: mailboxes.MailboxConfig) -> None:
        idle = client.has_capability("IDLE")
        if config.processed_folder and not client.folder_exists(config.processed_folder):
            client.create_folder(config.processed_folder)
        while not self.stop.is_set():
            self.sync(client, config)
            mailboxes.report(self.sessions, self.mailbox_id, None)
            self.backoff = 1.0
            if idle:
                self._idle(client)
            else:
                self.stop.wait(self.poll_seconds)

    def _idle(self, client: IMAPClient) -> None:
        """Wait in IDLE until the server says something changed, renewing it before the
        server's inactivity timeout (RFC 2177: at least every 29 minutes)."""
        client.idle()
        self.idling.set()
        try:
            renew_at = time.monotonic() + self.idle_seconds
            while not self.stop.is_set() and time.monotonic() < renew_at:
                asked = time.monotonic()
                if client.idle_check(timeout=1):
                    return
                # imapclient answers "nothing" at once when the connection is gone (a server
                # restart, a proxy cut): only a wait of about the timeout means "no news".
                if time.monotonic() - asked < 0.5:
                    raise ConnectionError("the IMAP connection closed during IDLE")
        finally:
            self.idling.clear()
            client.idle_done()

    def sync(self, client: IMAPClient, config: mailboxes.MailboxConfig) -> int:
        """Take every message past the cursor; return how many were taken."""
        selected = client.select_folder(config.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        cursor = mailboxes.cursor(self.sessions, self.mailbox_id)
        last = cursor.last_uid
        if cursor.uidvalidity != uidvalidity:
            if cursor.uidvalidity is not None:
                log.warning(
                    "mailbox %s: UIDVALIDITY %s -> %s, reading the folder again (stored "
                    "messages are recognised by their content)",
                    self.mailbox_id,
                    cursor.uidvalidity,
                    uidvalidity,
                )
            last = 0
            mailboxes.move_cursor(self.sessions, self.mailbox_id, uidvalidity, 0)
        # "n:*" always matches the newest message, even below n (RFC 3501 section 6.4.8).
        uids = sorted(uid for uid in client.search(["UID", f"{last + 1}:*"]) if uid > last)
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start : start + FETCH_BATCH]
            fetched = client.fetch(batch, ["BODY.PEEK[]"])
            for uid in batch:
                if self.stop.is_set():
                    return start
                self._take(client, config, uidvalidity, uid, fetched.get(uid))
        return len(uids)

    def _take(
        self,
        client: IMAPClient,
        config: mailboxes.MailboxConfig,
        uidvalidity: int,
        uid: int,
        data: dict[bytes, Any] | None,
    ) -> None:
        raw = data.get(b"BODY[]") if data else None
        if raw is None:  # expunged by someone else meanwhile: nothing to take
            mailboxes.move_cursor(self.sessions, self.mailbox_id, uidvalidity, uid)
            return
        if self.after_fetch is not None:
            self.after_fetch(uid)
        taken = mailboxes.take(
            self.commits, self.mailbox_id, uidvalidity, uid, bytes(raw), self.archive_domain
        )
        if taken.rejected is None:
            send_stored(self.enqueue, "email", taken.item_ids)
            try:
                self._mark(client, config, uid)
            except IMAPClientError as exc:
                # Stored is what matters: report it, and go on with the next messages.
                error = f"message UID {uid} stored but not flagged or moved: {exc}"
                log.warning("mailbox %s: %s", self.mailbox_id, error)
                mailboxes.report(self.sessions, self.mailbox_id, error)
        else:
            with logs.inbound_context(taken.item_ids[0], "email"):
                log.warning(
                    "mailbox %s: message UID %s kept in the mailbox, not taken: %s "
                    "(inbound item %s)",
                    self.mailbox_id,
                    uid,
                    taken.rejected,
                    taken.item_ids[0],
                )
        mailboxes.move_cursor(self.sessions, self.mailbox_id, uidvalidity, uid)

    def _mark(self, client: IMAPClient, config: mailboxes.MailboxConfig, uid: int) -> None:
        """After the store only: flag it \\Seen, or move it to the processed folder."""
        if config.processed_folder is None:
            client.add_flags([uid], [SEEN], silent=True)
        elif client.has_capability("MOVE"):
            client.move([uid], config.processed_folder)
        else:
            client.copy([uid], config.processed_folder)
            client.add_flags([uid], [b"\\Deleted", SEEN], silent=True)
            if client.has_capability("UIDPLUS"):
                client.uid_expunge([uid])


class ImapService:
    """Runs one poller thread per live mailbox, following the database: a mailbox added or
    revoked through the API or the CLI is picked up within `reload_seconds`."""

    def __init__(
        self,
        commits: GroupCommit,
        sealer: Sealer,
        enqueue: Enqueue,
        archive_domain: str,
        *,
        poll_seconds: float,
        idle_seconds: float,
        reload_seconds: float,
        ca_file: str | None,
        stop: threading.Event,
    ) -> None:
        self._make: Callable[[int], Poller] = lambda mailbox_id: Poller(
            commits,
            sealer,
            mailbox_id,
            enqueue,
            archive_domain,
            poll_seconds=poll_seconds,
            idle_seconds=idle_seconds,
            ca_file=ca_file,
        )
        self.sessions = commits.sessions
        self.reload_seconds = reload_seconds
        self.stop = stop
        self.pollers: dict[int, tuple[Poller, threading.Thread]] = {}

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    self.reconcile()
                except Exception:
                    log.exception("cannot read the mailboxes; trying again")
                self.stop.wait(self.reload_seconds)
        finally:
            for poller, _thread in self.pollers.values():
                poller.stop.set()
            for _poller, thread in self.pollers.values():
                thread.join(timeout=10)

    def reconcile(self) -> None:
        wanted = set(mailboxes.active_ids(self.sessions))
        for mailbox_id in list(self.pollers):
            poller, thread = self.pollers[mailbox_id]
            if mailbox_id not in wanted or not thread.is_alive():
                poller.stop.set()
                del self.pollers[mailbox_id]
        for mailbox_id in wanted - set(self.pollers):
            poller = self._make(mailbox_id)
            thread = threading.Thread(target=poller.run, name=f"imap-{mailbox_id}", daemon=True)
            thread.start()
            self.pollers[mailbox_id] = (poller, thread)
            log.info("reading IMAP mailbox %s", mailbox_id)
