"""Mail pulled from IMAP mailboxes by our poller against a real Dovecot: exactly once, through
kills between fetch and store and a new UIDVALIDITY; unroutable mail stays in the mailbox
with its reason.

SPEC "Mail: the per-card archive address" (IMAP paragraph).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from ingest.runtime import Runtime
from tests.support.dovecot import Dovecot, append, flags
from tests.support.helpers import archive_address, create_card, history, wait_for
from tests.support.imap import PollerThread, User, add_mailbox, items, mail, processed


def catch_all(token_address: str) -> str:
    """The company's catch-all form of an archive address: archive+<token>@company.com."""
    return f"archive+{token_address.split('@')[0]}@company.example"


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
