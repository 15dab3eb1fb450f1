"""The forwarder hears back: `GET /api/me/inbound` over the real HTTP app, for each role.

Every input is stored by mail over a real SMTP socket. Refusals are produced the real way,
by the worker: a mail to a card its sender may not edit, a mail to an address revoked after
the 250, a From that cannot be read, bulk mail, a stranger's mail, and a "Fwd:" mail whose
original sender cannot be read (processed with a notice). Two are finished in the test with
the functions a worker uses (`ingest.processing`, `ingest.pipeline`), since the real way is
impractical here: the held one (holding needs 21 copies of one message) and the failed one
(it needs an error of ours three times: `begin_attempt` / `record_failure`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_core.db import unit_of_work
from crm_core.models import InboundItem, InboundStatus, utcnow
from ingest import processing
from ingest.http.my_inbound import reason_text
from ingest.pipeline import begin_attempt, record_failure
from ingest.retention import purge_batch
from ingest.runtime import Runtime
from tests.conftest import API_TOKEN, FakeClock
from tests.support.helpers import (
    TWO_FROMS,
    archive_address,
    create_card,
    create_user,
    inbound_items,
    make_mail,
    send,
    wait_for,
)

# The API's clock: the revocation is dated by it, and shown as a day of the user's zone.
REVOKED_AT = datetime(2025, 12, 3, 15, 0, tzinfo=UTC)
HELD_REASON = (
    "held as a possible mail loop: 20 messages from anna@example.com to this archive "
    "address were already processed in the last 2:00:00"
)


@dataclass
class World:
    api: httpx.Client  # the admin token
    anna: httpx.Client
    boris: httpx.Client
    ada: httpx.Client  # a user who is an administrator, with her own token
    carol: httpx.Client  # a user who sent nothing
    users: dict[str, int]
    ids: dict[str, int]  # input name -> inbound id
    addresses: dict[str, str]  # card name -> its archive address


def client_of(api: httpx.Client, user_id: int) -> httpx.Client:
    token = api.post(f"/api/users/{user_id}/tokens", json={"name": "test"}).json()["token"]
    return httpx.Client(
        base_url=str(api.base_url), headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


@pytest.fixture
def world(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], clock: FakeClock
) -> Iterator[World]:
    clock.now = REVOKED_AT
    users = {
        name: create_user(api, f"{name}@example.com", name.title())["id"]
        for name in ("anna", "boris", "ada", "carol")
    }
    api.patch(f"/api/users/{users['ada']}/access", json={"is_admin": True}).raise_for_status()
    cards = {
        "anna": create_card(api, users["anna"], title="Acme renewal")["id"],
        "anna_revoked": create_card(api, users["anna"], title="Initech upgrade")["id"],
        "anna_rotated": create_card(api, users["anna"], title="Umbrella rollout")["id"],
        "boris": create_card(api, users["boris"], title="Globex pilot")["id"],
    }
    addresses = {name: archive_address(api, card) for name, card in cards.items()}
    ids: dict[str, int] = {}

    def mail(name: str, card: str, sender: str, subject: str, envelope: str = "") -> None:
        message = make_mail(sender, addresses[card], subject=subject)
        if name == "ada_bulk":
            message["Precedence"] = "bulk"
        send(smtp_server, message, addresses[card], envelope or sender)
        ids[name] = inbound_items(api)[0]["id"]

    # No worker yet: everything waits, stored, in this order (received_at ascending).
    mail("anna_processed", "anna", "anna@example.com", "On my card")
    mail("anna_not_allowed", "boris", "Anna <anna@example.com>", "Fwd: Globex order")
    mail("anna_revoked", "anna_revoked", "anna@example.com", "To a revoked address")
    mail("anna_rotated", "anna_rotated", "anna@example.com", "To a replaced address")
    send(smtp_server, TWO_FROMS % addresses["anna"].encode(), addresses["anna"], "Anna@Example.COM")
    ids["anna_two_froms"] = inbound_items(api)[0]["id"]
    mail("anna_held", "anna", "anna@example.com", "Devis n°42 – été")
    mail("anna_failed", "anna", "anna@example.com", "Failed one")
    mail("anna_notice", "anna", "anna@example.com", "Fwd: no header block")
    mail("boris_not_allowed", "anna", "boris@example.com", "Boris to Anna's card")
    # A stranger writing From their own address, whatever the envelope says: not Anna's.
    mail("stranger", "anna", "mallory@elsewhere.example", "Hi", envelope="anna@example.com")
    mail("ada_bulk", "anna", "ada@example.com", "Newsletter")

    # One address is revoked after its mail got the 250; another replaced by a new one, so
    # it stops working a grace period (7 days) after this clock's now: long past, for the worker.
    revoked = api.delete(f"/api/cards/{cards['anna_revoked']}/archive-address")
    assert revoked.status_code == 204, revoked.text
    archive_address(api, cards["anna_rotated"])
    with unit_of_work(runtime.sessions) as session:
        held = processing.claim(session, ids["anna_held"])
        assert held is not None
        held.sender = "anna@example.com"
        processing.finish(held, InboundStatus.HELD, HELD_REASON)
    for _ in range(3):  # settings.max_attempts
        assert begin_attempt(runtime.sessions, ids["anna_failed"], 3)
        parked = record_failure(
            runtime.sessions, ids["anna_failed"], "OperationalError: the disk is full", 3
        )
    assert parked

    running = runtime.pipeline.start_worker(threads=2, poll_ms=100)
    try:
        wait_for(
            lambda: not inbound_items(api, "received") and len(inbound_items(api)) == len(ids),
            what="every input finished",
        )
    finally:
        running.stop()
    statuses = {item["id"]: item["status"] for item in inbound_items(api)}
    assert statuses[ids["anna_processed"]] == "processed"
    assert statuses[ids["anna_revoked"]] == "rejected"

    clients = {name: client_of(api, users[name]) for name in ("anna", "boris", "ada", "carol")}
    try:
        yield World(api, **clients, users=users, ids=ids, addresses=addresses)
    finally:
        for client in clients.values():
            client.close()


def mine(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/me/inbound", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_a_user_sees_only_their_own_refused_held_failed_and_noticed_mail(world: World) -> None:
    items = mine(world.anna)
    named = {v: k for k, v in world.ids.items()}
    # Newest first; not her mail that simply landed, not Boris's, a stranger's or Ada's
    assert [named[item["id"]] for item in items] == [
        "anna_notice",
        "anna_failed",
        "anna_held",
        "anna_two_froms",
        "anna_rotated",
        "anna_revoked",
        "anna_not_allowed",
    ]
    by = {named[item["id"]]: item for item in items}
    assert {name: item["reason_text"] for name, item in by.items()} == {
        "anna_notice": "the original sender could not be read: kept as your own mail",
        "anna_failed": "failed after 3 attempts: we are looking into it",
        "anna_held": "held as a possible mail loop: an administrator can release it",
        "anna_two_froms": "the sender (From line) could not be read: it must be exactly one "
        "address",
        "anna_rotated": "address replaced by a newer one: it stopped working on 10 Dec",
        "anna_revoked": "address revoked on 3 Dec",
        "anna_not_allowed": "you are not allowed to edit this card",
    }
    assert {name: item["status"] for name, item in by.items()} == {
        "anna_notice": "processed",
        "anna_failed": "failed",
        "anna_held": "held",
        "anna_two_froms": "rejected",
        "anna_rotated": "rejected",
        "anna_revoked": "rejected",
        "anna_not_allowed": "rejected",
    }
    # The subject from the raw headers (encoded words decoded), the archive address, the
    # stored reason, the dates
    assert by["anna_held"]["subject"] == "Devis n°42 – été"
    assert by["anna_not_allowed"]["subject"] == "Fwd: Globex order"
    assert by["anna_two_froms"]["subject"] == "Two senders"
    assert by["anna_not_allowed"]["recipient"] == world.addresses["boris"]
    assert by["anna_revoked"]["recipient"] == world.addresses["anna_revoked"]
    assert by["anna_revoked"]["reason"].endswith("is unknown or revoked")
    assert by["anna_held"]["reason"] == HELD_REASON
    assert by["anna_failed"]["reason"] is None
    assert by["anna_two_froms"]["reason"] == (
        "the message has 2 From headers; exactly one is required"
    )
    for item in items:
        assert set(item) == {
            "id",
            "status",
            "received_at",
            "finished_at",
            "recipient",
            "subject",
            "reason",
            "reason_text",
        }
        assert item["finished_at"] >= item["received_at"]

    # Boris sees only his; Carol, who sent nothing, nothing
    [boris] = mine(world.boris)
    assert boris["id"] == world.ids["boris_not_allowed"]
    assert boris["reason_text"] == "you are not allowed to edit this card"
    assert mine(world.carol) == []


def test_an_administrator_sees_only_their_own_and_the_admin_token_acts_for_one_user(
    world: World,
) -> None:
    # Ada is an administrator, with her own token: only her own mail
    [ada] = mine(world.ada)
    assert ada["id"] == world.ids["ada_bulk"]
    assert ada["reason_text"] == "refused as bulk or mailing-list mail"
    assert ada["subject"] == "Newsletter"
    # The admin token acting for Anna sees Anna's, as Anna does
    acting = world.api.get("/api/me/inbound", headers={"X-Acting-User": str(world.users["anna"])})
    assert acting.status_code == 200, acting.text
    assert acting.json()["items"] == mine(world.anna)
    # The admin token acting for nobody has no mail of its own: it is told to name a user
    nobody = world.api.get("/api/me/inbound")
    assert nobody.status_code == 422
    assert "X-Acting-User" in nobody.json()["detail"]
    # The stranger's mail (From a non-user, envelope Anna's) is nobody's here
    everyone = [mine(c) for c in (world.anna, world.boris, world.ada, world.carol)]
    assert world.ids["stranger"] not in {item["id"] for items in everyone for item in items}


def test_the_status_filter_and_the_limit(world: World) -> None:
    named = {v: k for k, v in world.ids.items()}
    assert [named[i["id"]] for i in mine(world.anna, status="rejected")] == [
        "anna_two_froms",
        "anna_rotated",
        "anna_revoked",
        "anna_not_allowed",
    ]
    assert [named[i["id"]] for i in mine(world.anna, status="held")] == ["anna_held"]
    assert [named[i["id"]] for i in mine(world.anna, status="failed")] == ["anna_failed"]
    assert mine(world.boris, status="held") == []
    assert [named[i["id"]] for i in mine(world.anna, limit=2)] == ["anna_notice", "anna_failed"]
    for bad in ({"status": "bogus"}, {"status": "processed"}, {"limit": 0}, {"limit": 201}):
        response = world.anna.get("/api/me/inbound", params=bad)
        assert response.status_code == 422, (bad, response.text)


def test_after_retention_the_reason_stays_and_the_subject_goes(
    world: World, runtime: Runtime
) -> None:
    purged = purge_batch(runtime.sessions, utcnow() + timedelta(days=1), utcnow(), limit=1000)
    assert purged > 0
    by = {item["id"]: item for item in mine(world.anna)}
    gone = by[world.ids["anna_not_allowed"]]
    assert gone["subject"] is None
    assert gone["reason_text"] == "you are not allowed to edit this card"
    assert by[world.ids["anna_held"]]["subject"] == "Devis n°42 – été"  # held: kept


def test_without_a_valid_token_it_is_401(api: httpx.Client) -> None:
    with httpx.Client(base_url=str(api.base_url), timeout=10) as anonymous:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            response = anonymous.get("/api/me/inbound", headers=headers)
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == "Bearer"
        # the admin token is accepted (it then needs a user to act for)
        assert (
            anonymous.get(
                "/api/me/inbound", headers={"Authorization": f"Bearer {API_TOKEN}"}
            ).status_code
            == 422
        )


def test_the_route_is_documented(api: httpx.Client) -> None:
    operation = api.get("/openapi.json").json()["paths"]["/api/me/inbound"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/MyInboundListOut")
    assert operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorOut"
    )
    assert "422" in operation["responses"]
    status = next(p for p in operation["parameters"] if p["name"] == "status")
    assert "rejected" in str(status["schema"])


@pytest.mark.parametrize(
    ("status", "reason", "words"),
    [
        ("rejected", "cannot parse the message (AttributeError)", "the message could not be read"),
        (
            "rejected",
            "automatic message (Auto-Submitted: auto-replied)",
            "refused as an automatic message (an auto-reply or notice)",
        ),
        (
            "rejected",
            "null envelope sender (a bounce or notification)",
            "refused as a bounce or notification (no return address)",
        ),
        (
            "rejected",
            "mail loop (31 Received headers)",
            "refused as a mail loop (it went through too many servers)",
        ),
        (
            "rejected",
            "sender anna@example.com is not a CRM user",
            "your address was not a CRM user's when the mail arrived",
        ),
        (
            "rejected",
            "the From header has 2 addresses; exactly one is required",
            "the sender (From line) could not be read: it must be exactly one address",
        ),
        (
            "rejected",
            "archive address x@archive.test is unknown or revoked",
            "(what became of x@archive.test)",
        ),
        ("rejected", "something new", "refused: something new"),
        ("rejected", None, "refused"),
        (
            "held",
            "held as a possible mail loop: the same message was processed 20 times",
            "held as a possible mail loop: an administrator can release it",
        ),
        ("held", "waiting for a person", "held: waiting for a person"),
        (
            "processed",
            "forward without a header block: the original sender could not be read",
            "the original sender could not be read: kept as your own mail",
        ),
        (
            "processed",
            "no date in the forwarded block: the forward's own date is shown",
            "on its card, with a note: no date in the forwarded block: the forward's own "
            "date is shown",
        ),
        ("failed", None, "failed after 1 attempt: we are looking into it"),
    ],
)
def test_reasons_of_every_shape_in_plain_words(status: str, reason: str | None, words: str) -> None:
    """The shapes the HTTP tests above do not produce, and the fallbacks: a reason of no
    known shape is still shown as stored."""
    item = InboundItem(
        status=status, reason=reason, attempts=1, recipient="x@archive.test", meta={}
    )
    assert reason_text(item, lambda address: f"(what became of {address})") == words
