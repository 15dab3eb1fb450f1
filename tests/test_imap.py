"""Mail pulled from IMAP mailboxes against a real Dovecot: exactly once through restarts,
kills between fetch and store, and a new UIDVALIDITY; unroutable mail stays in the
mailbox with its reason; IDLE; the mailboxes API and CLI.

SPEC "Mail: the per-card archive address" (IMAP paragraph).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_core.models import HistoryEntry, InboundItem
from ingest.mailbox.imap_poller import ImapService, Poller
from ingest.runtime import Runtime
from tests.dovecot import Dovecot, Proxy, append, flags
from tests.helpers import archive_address, create_card, create_user, history, wait_for
from tests.test_cli import crm_ingest

User = tuple[str, str]


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def imap_user(dovecot: Dovecot) -> User:
    return dovecot.add_user()


def add_mailbox(api: httpx.Client, dovecot: Dovecot, user: User, **fields: Any) -> dict[str, Any]:
    body = {
        "host": "127.0.0.1",
        "port": dovecot.port,
        "security": "none",
        "username": user[0],
        "password": user[1],
        **fields,
    }
    response = api.post("/api/mailboxes", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def catch_all(token_address: str) -> str:
    """The company's catch-all form of an archive address: archive+<token>@company.com."""
    return f"archive+{token_address.split('@')[0]}@company.example"


def mail(subject: str, headers: dict[str, str]) -> bytes:
    message = EmailMessage()
    message["From"] = "Anna Sales <anna@example.com>"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="mail.example.com")
    for name, value in headers.items():
        message[name] = value
    message.set_content(f"Body of {subject}")
    return message.as_bytes(policy=SMTP)


class PollerThread:
    """Our poller for one mailbox in a thread, as `crm-ingest imap` runs it."""

    def __init__(self, runtime: Runtime, mailbox_id: int, **options: Any) -> None:
        self.poller = Poller(
            runtime.commits,
            runtime.sealer,
            mailbox_id,
            runtime.pipeline.enqueue,
            "archive.test",
            poll_seconds=options.pop("poll_seconds", 0.2),
            **options,
        )
        self.died: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.poller.run()
        except BaseException as exc:  # the fault test's "kill": kept for the test to see
            self.died = exc

    def close(self) -> None:
        self.poller.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


def items(runtime: Runtime) -> list[InboundItem]:
    with runtime.sessions() as session:
        return list(session.scalars(select(InboundItem).order_by(InboundItem.id)))


def processed(runtime: Runtime, count: int) -> bool:
    found = items(runtime)
    return len(found) >= count and all(i.status != "received" for i in found)


def email_entries(runtime: Runtime) -> list[str]:
    """The subjects of every e-mail history entry, all cards together."""
    with runtime.sessions() as session:
        return sorted(
            str(e.data["subject"])
            for e in session.scalars(select(HistoryEntry).where(HistoryEntry.type == "email"))
        )


@pytest.fixture
def card_token(api: httpx.Client) -> tuple[dict[str, Any], str]:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    return card, archive_address(api, card["id"])


def test_mail_appended_to_the_mailbox_lands_on_its_card_once(
    api: httpx.Client,
    runtime: Runtime,
    worker: None,
    dovecot: Dovecot,
    imap_user: User,
    card_token: tuple[dict[str, Any], str],
) -> None:
    card, address = card_token
    # Given three mails for the card, its token where a catch-all mailbox would show it
    with dovecot.client(imap_user) as imap:
        uids = [
            append(imap, "INBOX", mail("Plus address", {"To": catch_all(address)})),
            append(
                imap,
                "INBOX",
                mail(
                    "Delivered-To",
                    {"Delivered-To": catch_all(address), "To": "sales@company.example"},
                ),
            ),
            append(
                imap,
                "INBOX",
                mail("X-Original-To", {"X-Original-To": address, "To": "team@company.example"}),
            ),
        ]
    mailbox = add_mailbox(api, dovecot, imap_user)
    assert "password" not in mailbox and imap_user[1] not in json.dumps(mailbox)

    # ...and one addressed to this card and another one: on both cards
    other = create_card(api, card["responsible_id"], title="Other deal")
    other_address = archive_address(api, other["id"])
    with dovecot.client(imap_user) as imap:
        uids.append(
            append(
                imap,
                "INBOX",
                mail("Two cards", {"To": catch_all(address), "Cc": other_address}),
            )
        )

    # When the poller reads the mailbox
    poller = PollerThread(runtime, mailbox["id"])
    try:
        wait_for(lambda: processed(runtime, 5), what="four mails taken and processed")
        # Then each is on the card once, flagged \Seen only now that it is stored
        assert sorted(e["subject"] for e in history(api, card["id"])) == [
            "Delivered-To",
            "Plus address",
            "Two cards",
            "X-Original-To",
        ]
        assert [e["subject"] for e in history(api, other["id"])] == ["Two cards"]

        # (the poller flags and moves its cursor after handing each mail on, and reports
        # the sync once all are done: those may come a moment after the processing)
        def synced() -> dict[str, Any] | None:
            shown: dict[str, Any] = api.get(f"/api/mailboxes/{mailbox['id']}").json()
            return shown if shown["last_ok_at"] is not None else None

        shown = wait_for(synced, what="the mailbox's sync reported")
        assert shown["last_uid"] == uids[-1] and shown["last_error"] is None
        assert imap_user[1] not in json.dumps(shown)
        with dovecot.client(imap_user) as imap:
            assert all("\\Seen" in f for f in flags(imap, "INBOX").values())
    finally:
        poller.close()

    # A restarted poller fetches only what is new (the cursor, not the dedupe, says so)
    with dovecot.client(imap_user) as imap:
        new_uid = append(imap, "INBOX", mail("After restart", {"To": catch_all(address)}))
    fetched: list[int] = []
    poller = PollerThread(runtime, mailbox["id"], after_fetch=fetched.append)
    try:
        wait_for(lambda: processed(runtime, 6), what="the mail after the restart")
        time.sleep(0.5)
    finally:
        poller.close()
    assert fetched == [new_uid]
    assert len(items(runtime)) == 6
    assert len(history(api, card["id"])) == 5


def test_mail_that_cannot_be_routed_stays_in_the_mailbox_with_its_reason(
    api: httpx.Client,
    runtime: Runtime,
    worker: None,
    dovecot: Dovecot,
    imap_user: User,
    card_token: tuple[dict[str, Any], str],
) -> None:
    card, address = card_token
    revoked_card = create_card(api, card["responsible_id"], title="Old deal")
    revoked = archive_address(api, revoked_card["id"])
    assert api.delete(f"/api/cards/{revoked_card['id']}/archive-address").status_code == 204
    with dovecot.client(imap_user) as imap:
        first = append(imap, "INBOX", mail("First", {"To": address}))
        no_token = append(imap, "INBOX", mail("No token", {"To": "sales@company.example"}))
        dead = append(imap, "INBOX", mail("Revoked", {"To": catch_all(revoked)}))
        broken = append(imap, "INBOX", b"To: =?utf-8?q?broken\r\n\r\n")
        last = append(imap, "INBOX", mail("Last", {"To": address}))
    mailbox = add_mailbox(api, dovecot, imap_user)
    poller = PollerThread(runtime, mailbox["id"])
    try:
        wait_for(lambda: processed(runtime, 5), what="five messages handled")
    finally:
        poller.close()

    # The good ones are on the card; the others are visible with their reason
    assert sorted(e["subject"] for e in history(api, card["id"])) == ["First", "Last"]
    rejected = api.get("/api/inbound", params={"status": "rejected"}).json()["items"]
    reasons = sorted(i["reason"] for i in rejected)
    assert len(reasons) == 3
    assert sum("no archive address in Delivered-To" in r for r in reasons) == 2
    assert sum("unknown or revoked" in r for r in reasons) == 1
    assert all("stays in the mailbox" in r for r in reasons)
    # ...and stay in the mailbox unflagged, while the good ones are flagged
    with dovecot.client(imap_user) as imap:
        seen = {uid: "\\Seen" in f for uid, f in flags(imap, "INBOX").items()}
    assert seen == {first: True, no_token: False, dead: False, broken: False, last: True}


class Killed(BaseException):
    """The poller's process dying: nothing of ours catches it."""


def test_a_poller_killed_between_fetch_and_store_loses_and_doubles_nothing(
    api: httpx.Client,
    runtime: Runtime,
    worker: None,
    dovecot: Dovecot,
    imap_user: User,
    card_token: tuple[dict[str, Any], str],
) -> None:
    card, address = card_token
    with dovecot.client(imap_user) as imap:
        for n in range(5):
            append(imap, "INBOX", mail(f"Mail {n}", {"To": address}))
    mailbox = add_mailbox(api, dovecot, imap_user)

    def die_at_the_third(uid: int) -> None:
        if uid == 3:
            raise Killed

    # When the poller dies after fetching the third message, before storing it
    poller = PollerThread(runtime, mailbox["id"], after_fetch=die_at_the_third)
    poller.thread.join(timeout=30)
    assert not poller.thread.is_alive() and isinstance(poller.died, Killed)
    wait_for(lambda: processed(runtime, 2), what="the two mails before the kill")
    assert len(items(runtime)) == 2
    with dovecot.client(imap_user) as imap:
        assert ["\\Seen" in f for f in flags(imap, "INBOX").values()] == [True] * 2 + [False] * 3

    # Then a restarted poller takes the three others, each once
    poller = PollerThread(runtime, mailbox["id"])
    try:
        wait_for(lambda: processed(runtime, 5), what="all five mails")
        time.sleep(0.5)
    finally:
        poller.close()
    assert len(items(runtime)) == 5
    assert sorted(e["subject"] for e in history(api, card["id"])) == [f"Mail {n}" for n in range(5)]


@pytest.mark.timeout(300)
# 40 mails from one sender to one card: more than the loop limit lets through, and this
# test is about the IMAP process (the limit has its own, tests/test_inbound_lifecycle.py).
@pytest.mark.settings(loop_limit_count=1000)
def test_crm_ingest_imap_killed_at_any_moment_then_restarted(
    api: httpx.Client,
    runtime: Runtime,
    worker: None,
    dovecot: Dovecot,
    imap_user: User,
    card_token: tuple[dict[str, Any], str],
) -> None:
    """The real process, SIGKILLed while it works: whatever it had done, a restart ends
    with every mail on the card exactly once."""
    _card, address = card_token
    with dovecot.client(imap_user) as imap:
        for n in range(40):
            append(imap, "INBOX", mail(f"Mail {n:02d}", {"To": address}))
    s = runtime.settings
    env = {
        "CRM_DATABASE_URL": s.database_url,
        "CRM_BROKER_URL": s.broker_url,
        "CRM_BROKER_NAMESPACE": s.broker_namespace,
        "CRM_DATA_DIR": str(s.data_dir),  # the same sealing key as this test's runtime
        "CRM_ARCHIVE_DOMAIN": "archive.test",
        "CRM_IMAP_RELOAD_SECONDS": "0.2",
        "CRM_LOG_LEVEL": "WARNING",
    }
    password_file = s.data_dir / "imap-password"
    password_file.write_text(imap_user[1])
    added = subprocess.run(
        [
            *crm_ingest_command(),
            "mailbox",
            "add",
            "--host=127.0.0.1",
            f"--port={dovecot.port}",
            "--security=none",
            f"--username={imap_user[0]}",
            f"--password-file={password_file}",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("mailbox 1:") and imap_user[1] not in added.stdout

    first = crm_ingest(["imap"], env)
    try:
        wait_for(lambda: len(items(runtime)) >= 5, timeout=60, what="the first mails stored")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    print(f"\nkilled with {len(items(runtime))} of 40 mails stored")
    second = crm_ingest(["imap"], env)
    try:
        wait_for(lambda: processed(runtime, 40), timeout=120, what="all forty mails")
        time.sleep(0.5)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    assert len(items(runtime)) == 40
    assert email_entries(runtime) == [f"Mail {n:02d}" for n in range(40)]
    with dovecot.client(imap_user) as imap:
        assert all("\\Seen" in f for f in flags(imap, "INBOX").values())
    listed = subprocess.run(
        [*crm_ingest_command(), "mailbox", "list"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"{imap_user[0]}@127.0.0.1:{dovecot.port}/INBOX" in listed.stdout
    assert imap_user[1] not in listed.stdout


def crm_ingest_command() -> list[str]:
    return [sys.executable, "-m", "ingest.cli"]


def test_a_new_uidvalidity_reads_the_folder_again_without_duplicates(
    api: httpx.Client,
    runtime: Runtime,
    worker: None,
    dovecot: Dovecot,
    imap_user: User,
    card_token: tuple[dict[str, Any], str],
) -> None:
    card, address = card_token
    old = [mail(f"Old {n}", {"To": address}) for n in range(2)]
    with dovecot.client(imap_user) as imap:
        assert imap.create("Archive")[0] == "OK"
        for raw in old:
            append(imap, "Archive", raw)
    mailbox = add_mailbox(api, dovecot, imap_user, folder="Archive")
    poller = PollerThread(runtime, mailbox["id"])
    try:
        wait_for(lambda: processed(runtime, 2), what="the two old mails")
        first_validity = api.get(f"/api/mailboxes/{mailbox['id']}").json()["uidvalidity"]

        # When the folder is recreated (a restore, a server move): new UIDVALIDITY, the
        # same messages under UIDs 1 and 2 again, and a new one
        with dovecot.client(imap_user) as imap:
            assert imap.delete("Archive")[0] == "OK"
            assert imap.create("Archive")[0] == "OK"
            for raw in old:
                append(imap, "Archive", raw)
            append(imap, "Archive", mail("New", {"To": address}))

        def new_cursor() -> bool:
            shown = api.get(f"/api/mailboxes/{mailbox['id']}").json()
            return bool(shown["uidvalidity"] != first_validity and shown["last_uid"] == 3)

        wait_for(new_cursor, timeout=30, what="the cursor of the new UIDVALIDITY")
        wait_for(lambda: processed(runtime, 3), what="the new mail")
    finally:
        poller.close()
    # Then nothing is doubled and nothing skipped
    assert sorted(e["subject"] for e in history(api, card["id"])) == ["New", "Old 0", "Old 1"]
    assert len(items(runtime)) == 3
    with dovecot.client(imap_user) as imap:
        assert list(flags(imap, "Archive").values()) == ["\\Seen"] * 3


def test_idle_picks_a_new_message_up_without_waiting_for_the_poll(
    api: httpx.Client,
    runtime: Runtime,
    dovecot: Dovecot,
    imap_user: User,
    card_token: tuple[dict[str, Any], str],
) -> None:
    _card, address = card_token
    mailbox = add_mailbox(api, dovecot, imap_user)
    # Polling an hour apart: only IDLE can bring the message in time
    poller = PollerThread(runtime, mailbox["id"], poll_seconds=3600)
    try:
        assert poller.poller.idling.wait(timeout=20), "the poller never entered IDLE"
        with dovecot.client(imap_user) as imap:
            append(imap, "INBOX", mail("Right now", {"To": address}))
        started = time.monotonic()
        wait_for(lambda: len(items(runtime)) == 1, timeout=15, what="the message, by IDLE")
        print(f"\nIDLE: stored {time.monotonic() - started:.3f} s after the APPEND")
    finally:
        poller.close()


def test_the_mailboxes_api_and_the_service(
    api: httpx.Client,
    runtime: Runtime,
    dovecot: Dovecot,
    imap_user: User,
    card_token: tuple[dict[str, Any], str],
) -> None:
    _card, address = card_token
    refused: dict[str, dict[str, Any]] = {
        'security: "none" would send the password in clear': {
            "host": "imap.example.com",
            "security": "none",
            "password": "x",
        },
        "password or oauth2_token: give exactly one": {"password": None},
        "password or oauth2_token: give exactly one of them": {"oauth2_token": "t"},
    }
    base = {
        "host": "127.0.0.1",
        "port": dovecot.port,
        "security": "none",
        "username": "u",
        "password": "p",
    }
    for expected, fields in refused.items():
        response = api.post("/api/mailboxes", json={**base, **fields})
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith(expected)
    bad_port = api.post("/api/mailboxes", json={**base, "port": 0})
    assert bad_port.status_code == 422 and "port" in bad_port.text
    assert api.get("/api/mailboxes").json()["items"] == []

    # The service starts a poller for a new mailbox, moving taken mail to a folder
    with dovecot.client(imap_user) as imap:
        assert imap.create("Done")[0] == "OK"
        append(imap, "INBOX", mail("Moved", {"To": address}))
    stop = threading.Event()
    service = ImapService(
        runtime.commits,
        runtime.sealer,
        runtime.pipeline.enqueue,
        "archive.test",
        poll_seconds=0.2,
        idle_seconds=60,
        reload_seconds=0.2,
        ca_file=None,
        stop=stop,
    )
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        mailbox = add_mailbox(api, dovecot, imap_user, processed_folder="Done")
        wait_for(lambda: len(items(runtime)) == 1, what="the mail taken by the service")
        with dovecot.client(imap_user) as imap:
            wait_for(lambda: flags(imap, "INBOX") == {}, what="the mail moved out of INBOX")
            assert len(flags(imap, "Done")) == 1
        [(_poller, poller_thread)] = service.pollers.values()
        # Revoked: the service stops its poller
        assert api.delete(f"/api/mailboxes/{mailbox['id']}").status_code == 204
        wait_for(lambda: not poller_thread.is_alive(), what="the poller stopped")
        assert service.pollers == {}
    finally:
        stop.set()
        thread.join(timeout=15)
    assert api.get(f"/api/mailboxes/{mailbox['id']}").json()["revoked_at"] is not None


def test_a_wrong_password_is_reported_and_retried(
    api: httpx.Client, runtime: Runtime, dovecot: Dovecot, imap_user: User
) -> None:
    mailbox = add_mailbox(api, dovecot, (imap_user[0], "wrong"))
    poller = PollerThread(runtime, mailbox["id"])
    try:

        def reported() -> str | None:
            shown = api.get(f"/api/mailboxes/{mailbox['id']}").json()
            return shown["last_error"]  # type: ignore[no-any-return]

        error = wait_for(reported, what="the login error reported")
        assert "LoginError" in error or "authentication" in error.lower()
    finally:
        poller.close()
    assert items(runtime) == []


def test_a_connection_cut_during_idle_is_noticed_and_reopened(
    api: httpx.Client,
    runtime: Runtime,
    dovecot: Dovecot,
    imap_user: User,
    card_token: tuple[dict[str, Any], str],
) -> None:
    _card, address = card_token
    proxy = Proxy(dovecot.port)
    mailbox = add_mailbox(api, dovecot, imap_user, port=proxy.port, processed_folder="Taken")
    poller = PollerThread(runtime, mailbox["id"], poll_seconds=3600)
    try:
        assert poller.poller.idling.wait(timeout=20)
        proxy.cut()  # no BYE, the sockets just close
        with dovecot.client(imap_user) as imap:
            append(imap, "INBOX", mail("After the cut", {"To": address}))
        wait_for(lambda: len(items(runtime)) == 1, timeout=30, what="the mail, after reconnecting")
        # The reconnection worked: the error of the cut is cleared after the catch-up
        wait_for(
            lambda: api.get(f"/api/mailboxes/{mailbox['id']}").json()["last_error"] is None,
            what="the error cleared",
        )
        # ...and the processed folder, missing at first, was made and used
        with dovecot.client(imap_user) as imap:
            assert flags(imap, "INBOX") == {} and len(flags(imap, "Taken")) == 1
    finally:
        poller.close()
        proxy.close()
