"""Inputs that cannot be processed: poison (failed, bounded even when it kills its worker),
re-processing (API and CLI), and retention with legal hold."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import update

from crm_core.db import unit_of_work
from crm_core.models import InboundItem, utcnow
from ingest import inbound, processing, sweeper
from ingest.runtime import Runtime
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    history,
    inbound_items,
    item,
    make_mail,
    send,
    wait_for,
)
from tests.support.workers import crm_env, crm_ingest


def test_an_input_that_kills_its_worker_is_failed_after_the_attempts_not_resent_forever(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], tmp_path: Path
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    [stored] = inbound_items(api)
    sweeping = crm_ingest("sweeper", runtime, tmp_path)
    try:
        # A worker dies (SIGKILL) inside the processing of this mail, three times: the
        # sweeper re-sends it after each death, and each start is counted before it runs.
        for attempt in (1, 2, 3):
            poisoned = crm_ingest(
                "-m tests.support.poison_worker", runtime, tmp_path, max_attempts="3"
            )
            assert poisoned.wait(timeout=60) == -signal.SIGKILL
            assert item(api, stored["id"])["attempts"] == attempt
            assert item(api, stored["id"])["status"] == "received"
        # The next delivery finds three attempts started and none finished: parked as failed,
        # and this worker lives on.
        survivor = crm_ingest("-m tests.support.poison_worker", runtime, tmp_path, max_attempts="3")
        try:
            failed = wait_for(
                lambda: inbound_items(api, "failed"), timeout=60, what="the item parked as failed"
            )
            assert survivor.poll() is None
        finally:
            survivor.send_signal(signal.SIGTERM)
            survivor.wait(timeout=30)
    finally:
        sweeping.send_signal(signal.SIGTERM)
        sweeping.wait(timeout=30)
    assert failed[0]["id"] == stored["id"]
    assert "3 attempts started and none finished" in failed[0]["error"]
    assert history(api, card["id"]) == []
    shown = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "inbound", str(stored["id"])],
        env=crm_env(runtime, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(shown.stdout)["status"] == "failed"

    # `crm-ingest reprocess ID` sends it again; a healthy worker records it, once.
    done = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "reprocess", str(stored["id"])],
        env=crm_env(runtime, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"inbound item {stored['id']} sent to processing again" in done.stdout
    healthy = runtime.pipeline.start_worker(threads=1, poll_ms=100)
    try:
        wait_for(lambda: inbound_items(api, "processed"), timeout=30, what="reprocessing")
    finally:
        healthy.stop()
    assert len(history(api, card["id"])) == 1
    assert item(api, stored["id"])["attempts"] == 1


def test_reprocess_refuses_what_is_not_failed_rejected_or_held(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None, tmp_path: Path
) -> None:
    anna = create_user(api, "anna@example.com")
    address = archive_address(api, create_card(api, anna["id"])["id"])
    send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    [processed] = wait_for(lambda: inbound_items(api, "processed"), what="processing")
    answer = api.post(f"/api/inbound/{processed['id']}/reprocess")
    assert answer.status_code == 409
    assert "is processed; only failed, rejected or held" in answer.json()["detail"]
    assert api.post("/api/inbound/999999/reprocess").status_code == 404
    done = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "reprocess", str(processed["id"])],
        env=crm_env(runtime, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "only failed, rejected or held" in done.stderr


def test_a_rejected_mail_is_recorded_once_its_cause_is_fixed_and_it_is_reprocessed(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    card = create_card(api, anna["id"])
    address = archive_address(api, card["id"])
    # A colleague not yet in the CRM forwards a mail: rejected, with the reason.
    send(smtp_server, make_mail("boris@example.com", address), address, "boris@example.com")
    [rejected] = wait_for(lambda: inbound_items(api, "rejected"), what="the refusal")
    assert "boris@example.com" in rejected["reason"]
    # The admin creates the user (with rights on the card), then re-processes the mail.
    boris = create_user(api, "boris@example.com")
    api.patch(f"/api/cards/{card['id']}", json={"responsible_id": boris["id"]}).raise_for_status()
    answer = api.post(f"/api/inbound/{rejected['id']}/reprocess")
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "received"
    wait_for(lambda: inbound_items(api, "processed"), what="reprocessing")
    assert [entry["type"] for entry in history(api, card["id"])].count("email") == 1


def test_retention_deletes_finished_raw_inputs_but_keeps_failed_held_and_legal_hold(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], worker: None
) -> None:
    anna = create_user(api, "anna@example.com")
    kept_card = create_card(api, anna["id"], title="in litigation")
    card = create_card(api, anna["id"])
    address, kept_address = archive_address(api, card["id"]), archive_address(api, kept_card["id"])
    mails = {
        "processed": make_mail("anna@example.com", address, "one"),
        "held by item": make_mail("anna@example.com", address, "two"),
        "held by card": make_mail("anna@example.com", kept_address, "three"),
        "rejected": make_mail("stranger@example.org", address, "four"),
    }
    for mail in mails.values():
        send(smtp_server, mail, str(mail["To"]), "x@example.org")
    wait_for(lambda: all(i["status"] != "received" for i in inbound_items(api)), what="all")
    by_subject = {}
    for listed in inbound_items(api):
        raw = processing.load(runtime.sessions, listed["id"])
        assert raw is not None
        subject = next(
            k for k, m in mails.items() if f"Subject: {m['Subject']}\r\n".encode() in raw.raw
        )
        by_subject[subject] = listed["id"]
    [failed_id] = inbound.store(
        runtime.commits,
        [inbound.NewInput(channel="email", raw=b"poison", dedupe_key="poison", recipient="r")],
    )
    with unit_of_work(runtime.sessions) as session:
        session.execute(
            update(InboundItem)
            .where(InboundItem.id == failed_id)
            .values(status="failed", finished_at=utcnow(), error="boom")
        )
    held = api.put(f"/api/inbound/{by_subject['held by item']}/legal-hold", json={"hold": True})
    assert held.status_code == 200 and held.json()["legal_hold"] is True
    api.put(f"/api/cards/{kept_card['id']}/legal-hold", json={"hold": True}).raise_for_status()

    # Not yet due: nothing is deleted.
    assert sweeper.purge_expired(runtime.sessions, timedelta(days=90), utcnow()) == 0
    # 91 days later: processed and rejected inputs lose their raw bytes, the others keep them.
    later = utcnow() + timedelta(days=91)
    assert sweeper.purge_expired(runtime.sessions, timedelta(days=90), later) == 2
    for subject, item_id in by_subject.items():
        kept = processing.load(runtime.sessions, item_id)
        assert kept is not None
        purged = subject in ("processed", "rejected")
        assert (kept.raw == b"") is purged, subject
        assert (kept.purged_at is not None) is purged, subject
    failed = processing.load(runtime.sessions, failed_id)
    assert failed is not None and failed.raw == b"poison"
    shown = item(api, by_subject["processed"])
    assert shown["purged_at"] is not None and shown["status"] == "processed"
    # A purged input cannot be re-processed, and the same mail sent again is still known.
    refused = api.post(f"/api/inbound/{by_subject['rejected']}/reprocess")
    assert refused.status_code == 409 and "deleted by retention" in refused.json()["detail"]
    send(smtp_server, mails["processed"], address, "x@example.org")
    assert len(inbound_items(api)) == 5
    # Lifting the card's hold lets its input go at the next run.
    api.put(f"/api/cards/{kept_card['id']}/legal-hold", json={"hold": False}).raise_for_status()
    assert sweeper.purge_expired(runtime.sessions, timedelta(days=90), later) == 1
