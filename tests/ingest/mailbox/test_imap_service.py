"""The IMAP service against a real Dovecot: `crm-ingest imap` killed at any moment and
restarted, IDLE (and a connection cut during it), a wrong password, the mailboxes API and
CLI.

SPEC "Mail: the per-card archive address" (IMAP paragraph).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_core.models import HistoryEntry
from ingest.mailbox.imap_poller import ImapService
from ingest.runtime import Runtime
from tests.support.cli import crm_ingest
from tests.support.dovecot import Dovecot, Proxy, append, flags
from tests.support.helpers import wait_for
from tests.support.imap import PollerThread, User, add_mailbox, items, mail, processed


def email_entries(runtime: Runtime) -> list[str]:
    """The subjects of every e-mail history entry, all cards together."""
    with runtime.sessions() as session:
        return sorted(
            str(e.data["subject"])
            for e in session.scalars(select(HistoryEntry).where(HistoryEntry.type == "email"))
        )


@pytest.mark.timeout(300)
# 40 mails from one sender to one card: more than the loop limit lets through, and this
# test is about the IMAP process (the limit has its own, tests/ingest/mailbox/test_loop_guard.py).
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
