"""History (filters, notes, status and field changes, documents; reopen and delete under the
administrator's settings, with their audit entries), documents of unreadable cards, and mail
from a user who may not edit the card.

SPEC "History", "Access rights", "Calendar"; seeds 002, 003, 004.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    grant,
    history,
    inbound_items,
    make_mail,
    send,
    wait_for,
)


def as_user(api: httpx.Client, user_id: int) -> httpx.Client:
    token = api.post(f"/api/users/{user_id}/tokens", json={"name": "test"}).json()["token"]
    return httpx.Client(
        base_url=str(api.base_url), headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def types(api: httpx.Client, card_id: int, **params: Any) -> list[str]:
    response = api.get(f"/api/cards/{card_id}/history", params=params)
    assert response.status_code == 200, response.text
    return [e["type"] for e in response.json()["items"]]


def test_history_records_changes_notes_and_documents_and_filters_them(
    api: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com", "Anna")
    card = create_card(api, anna["id"])
    anna_api = as_user(api, anna["id"])
    try:
        # Status and field changes, by Anna, with old and new value
        assert (
            anna_api.patch(f"/api/cards/{card['id']}", json={"stage": "proposal"}).status_code
            == 200
        )
        clock.advance(minutes=1)
        anna_api.patch(f"/api/cards/{card['id']}", json={"title": "Acme: 45 licences"})
        clock.advance(minutes=1)
        note = anna_api.post(
            f"/api/cards/{card['id']}/notes", json={"text": "Met John at the fair"}
        )
        assert note.status_code == 201 and note.json()["text"] == "Met John at the fair"
        clock.advance(minutes=1)
        upload = anna_api.post(
            f"/api/cards/{card['id']}/documents",
            params={"name": "offer.pdf"},
            content=b"%PDF-1.4 offer",
            headers={"Content-Type": "application/pdf"},
        )
        assert upload.status_code == 201, upload.text
        act = anna_api.post(
            "/api/activities",
            json={"card_id": card["id"], "type": "task", "responsible_id": anna["id"]},
        ).json()
        clock.advance(minutes=1)
        anna_api.post(f"/api/activities/{act['id']}/close", json={})
    finally:
        anna_api.close()

    items = api.get(f"/api/cards/{card['id']}/history").json()["items"]
    by_type = {e["type"]: e for e in items}
    stage = by_type["status_change"]
    assert (stage["field"], stage["old"], stage["new"]) == ("stage", "new", "proposal")
    assert stage["by"] == {"id": anna["id"], "name": "Anna"} and stage["logged_by_id"] == anna["id"]
    title = by_type["field_change"]
    assert (title["old"], title["new"]) == ("Acme deal", "Acme: 45 licences")
    assert by_type["document"]["file_name"] == "offer.pdf"
    assert types(api, card["id"]) == [
        "task_closed",
        "document",
        "note",
        "field_change",
        "status_change",
    ]

    # The filter, alone or combined, and the period
    assert types(api, card["id"], type="notes") == ["note"]
    assert types(api, card["id"], type=["status", "fields"]) == ["field_change", "status_change"]
    assert types(api, card["id"], type="tasks") == ["task_closed"]
    assert types(api, card["id"], type="documents") == ["document"]
    first = datetime.fromisoformat(stage["occurred_at"])
    assert types(api, card["id"], since=(first + timedelta(seconds=30)).isoformat()) == [
        "task_closed",
        "document",
        "note",
        "field_change",
    ]
    assert types(api, card["id"], until=(first + timedelta(seconds=30)).isoformat()) == [
        "status_change"
    ]
    bad = api.get(f"/api/cards/{card['id']}/history", params={"type": "gossip"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "type", 0]


@pytest.mark.parametrize("setting", ["editors", "admins"])
def test_reopening_a_closed_task_follows_the_setting(
    api: httpx.Client, runtime: Runtime, setting: str
) -> None:
    anna = create_user(api, "anna@example.com", "Anna")
    boris = create_user(api, "boris@example.com", "Boris")
    grant(api, boris["id"], deal="all")  # Boris may edit Anna's deals
    card = create_card(api, anna["id"])
    task = api.post(
        "/api/activities",
        json={"card_id": card["id"], "type": "task", "responsible_id": anna["id"]},
    ).json()
    assert (
        api.patch("/api/settings", json={"reopen_tasks": setting}).json()["reopen_tasks"] == setting
    )
    boris_api = as_user(api, boris["id"])
    try:
        assert boris_api.post(f"/api/activities/{task['id']}/close", json={}).status_code == 200
        reopened = boris_api.post(f"/api/activities/{task['id']}/reopen")
    finally:
        boris_api.close()
    entries = history(api, card["id"])
    if setting == "editors":
        assert reopened.status_code == 200 and reopened.json()["is_open"] is True
        entry = next(e for e in entries if e["type"] == "task_reopened")
        assert entry["by"] == {"id": boris["id"], "name": "Boris"}
    else:
        assert reopened.status_code == 403 and "reopen_tasks: admins" in reopened.json()["detail"]
        assert api.get(f"/api/activities/{task['id']}").json()["is_open"] is False
        assert "task_reopened" not in [e["type"] for e in entries]
        # an administrator still may
        admin = api.post(f"/api/activities/{task['id']}/reopen", headers={"X-Acting-User": "1"})
        assert admin.status_code == 200
        assert [e["type"] for e in history(api, card["id"])].count("task_reopened") == 1
    # ...and the counters see the task again (back in the open activities)
    open_tasks = api.get("/api/activities", params={"card_id": card["id"], "is_open": True})
    assert len(open_tasks.json()["items"]) == 1


@pytest.mark.parametrize("setting", ["editors", "admins"])
def test_deleting_a_document_follows_the_setting_and_is_for_good(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None, setting: str
) -> None:
    anna = create_user(api, "anna@example.com", "Anna")
    boris = create_user(api, "boris@example.com", "Boris")
    grant(api, boris["id"], deal="all")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    mail = make_mail("anna@example.com", address, subject="Signed contract")
    mail.add_attachment(b"%PDF contract", maintype="application", subtype="pdf", filename="c.pdf")
    send(smtp_server, mail, address, "anna@example.com")
    wait_for(lambda: inbound_items(api, "processed"), what="the mail")
    [document] = api.get(f"/api/cards/{card['id']}/documents").json()["items"]
    api.patch("/api/settings", json={"delete_documents": setting})

    boris_api = as_user(api, boris["id"])
    try:
        deleted = boris_api.delete(f"/api/documents/{document['id']}")
    finally:
        boris_api.close()
    if setting == "admins":
        assert deleted.status_code == 403 and "delete_documents: admins" in deleted.json()["detail"]
        assert api.get(f"/api/documents/{document['id']}/content").content == b"%PDF contract"
        deleted = api.delete(f"/api/documents/{document['id']}", headers={"X-Acting-User": "1"})
        who = {"id": anna["id"], "name": "Anna"}
    else:
        who = {"id": boris["id"], "name": "Boris"}
    assert deleted.status_code == 204
    # Gone for good: the listing, the content, the stored bytes
    assert api.get(f"/api/cards/{card['id']}/documents").json()["items"] == []
    assert api.get(f"/api/documents/{document['id']}/content").status_code == 404
    with runtime.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM blobs").scalar() == 0
    entries = history(api, card["id"])
    audit = next(e for e in entries if e["type"] == "document_deleted")
    assert audit["file_name"] == "c.pdf" and audit["by"] == who
    assert audit["logged_at"] is not None
    mail_entry = next(e for e in entries if e["type"] == "email")
    assert mail_entry["attachments"][0]["deleted"] is True


def test_mail_from_a_user_who_may_not_edit_the_card_is_rejected(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    create_user(api, "boris@example.com")  # default role: only his own items
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    send(smtp_server, make_mail("boris@example.com", address), address, "boris@example.com")
    [rejected] = wait_for(lambda: inbound_items(api, "rejected"), what="the refusal")
    assert rejected["reason"] == (
        f"sender boris@example.com may not edit card {card['id']}, so not archive to it"
    )
    assert history(api, card["id"]) == []


def test_reopening_by_edit_or_bulk_follows_the_setting_too(
    api: httpx.Client, runtime: Runtime
) -> None:
    anna = create_user(api, "anna@example.com", "Anna")
    boris = create_user(api, "boris@example.com", "Boris")
    grant(api, boris["id"], deal="all")
    card = create_card(api, anna["id"])
    task = api.post(
        "/api/activities",
        json={"card_id": card["id"], "type": "task", "responsible_id": anna["id"]},
    ).json()
    api.post(f"/api/activities/{task['id']}/close", json={})
    api.patch("/api/settings", json={"reopen_tasks": "admins"})
    boris_api = as_user(api, boris["id"])
    try:
        by_status = boris_api.patch(f"/api/activities/{task['id']}", json={"status": "scheduled"})
        in_bulk = boris_api.post(
            "/api/activities/bulk",
            json={"ids": [task["id"]], "action": "edit", "changes": {"status": "postponed"}},
        )
        # a closed task edited without reopening it is fine
        renamed = boris_api.patch(f"/api/activities/{task['id']}", json={"subject": "Renamed"})
    finally:
        boris_api.close()
    assert (by_status.status_code, in_bulk.status_code, renamed.status_code) == (403, 403, 200)
    assert api.get(f"/api/activities/{task['id']}").json()["is_open"] is False
    # "responsible": the task's own responsible may reopen it
    api.patch("/api/settings", json={"reopen_tasks": "responsible"})
    anna_api = as_user(api, anna["id"])
    try:
        assert anna_api.post(f"/api/activities/{task['id']}/reopen").status_code == 200
    finally:
        anna_api.close()


def test_documents_of_unreadable_cards_are_unknown_and_card_deletion_cleans_up(
    api: httpx.Client, runtime: Runtime
) -> None:
    anna = create_user(api, "anna@example.com", "Anna")
    boris = create_user(api, "boris@example.com", "Boris")
    annas = create_card(api, anna["id"], title="Anna's")
    boris_card = create_card(api, boris["id"], title="Boris's")
    upload = api.post(
        f"/api/cards/{boris_card['id']}/documents", params={"name": "b.txt"}, content=b"secret"
    ).json()
    shared = api.post(
        "/api/activities",
        json={
            "card_ids": [annas["id"], boris_card["id"]],
            "type": "task",
            "responsible_id": anna["id"],
        },
    ).json()
    anna_api = as_user(api, anna["id"])
    try:
        hidden = anna_api.get(f"/api/documents/{upload['id']}/content")
        missing = anna_api.get("/api/documents/999999/content")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"] == f"document {upload['id']} does not exist"
        assert anna_api.delete(f"/api/documents/{upload['id']}").status_code == 404
        # Anna hands her card to Boris: adding a card for him is not hers to do
        handed = anna_api.patch(f"/api/cards/{annas['id']}", json={"responsible_id": boris["id"]})
        assert handed.status_code == 403
        # Anna deletes her card: the shared task stays on Boris's card
        assert anna_api.delete(f"/api/cards/{annas['id']}").status_code == 204
    finally:
        anna_api.close()
    kept = api.get(f"/api/activities/{shared['id']}").json()
    assert kept["card_ids"] == [boris_card["id"]] and kept["card_id"] == boris_card["id"]
    # Deleting Boris's card takes the document's content with it
    assert api.delete(f"/api/cards/{boris_card['id']}").status_code == 204
    with runtime.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM blobs").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM activities").scalar() == 0
