"""The access findings of the outside probe (issue 20), each replayed over real HTTP (and
SMTP, and the call-log webhook) and answered as fixed: contacts follow the access rights,
activities are handed only to whom one may hand a card and seen by their responsible, an
activity names only the cards its reader may read, a document's type is a media type.

SPEC "Which card?", "Access rights", "History"; seeds 002, 003. Alice and Carol work in
Sales, Bob in Support; Alice and Bob may do everything with their department's deals,
Carol only with her own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.policy import SMTP
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.helpers import create_user, grant, history, make_mail, send, wait_for
from tests.test_calllog import all_done, call, post_signed, source

CUSTOMER_PHONE = "+33612345678"
CUSTOMER_MAIL = "customer@client.example"


@dataclass
class Office:
    admin: httpx.Client
    alice: httpx.Client
    bob: httpx.Client
    carol: httpx.Client
    ids: dict[str, int]
    emails: dict[str, str]
    clock: FakeClock

    def card(self, client: httpx.Client, owner: str, **fields: Any) -> dict[str, Any]:
        """A deal of `owner`'s, made by `client`; asserts it was made."""
        response = client.post(
            "/api/cards",
            json={
                "title": f"{owner}'s deal",
                "entity_type": "deal",
                "stage": "new",
                "responsible_id": self.ids[owner],
                **fields,
            },
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def task(self, client: httpx.Client, card_ids: list[int], responsible: str) -> httpx.Response:
        return client.post(
            "/api/activities",
            json={
                "card_ids": card_ids,
                "type": "task",
                "subject": "Send the offer",
                "responsible_id": self.ids[responsible],
                "deadline": (self.clock() + timedelta(days=2)).isoformat(),
            },
        )


@pytest.fixture
def office(api: httpx.Client, runtime: Runtime, clock: FakeClock) -> Iterator[Office]:
    sales = api.post("/api/departments", json={"name": "Sales"}).json()
    support = api.post("/api/departments", json={"name": "Support"}).json()
    ids, emails, clients = {}, {}, {}
    for name, department in (("alice", sales), ("bob", support), ("carol", sales)):
        user = create_user(api, f"{name}@example.com", name.title())
        placed = api.patch(
            f"/api/users/{user['id']}/access", json={"department_id": department["id"]}
        )
        assert placed.status_code == 200, placed.text
        if name != "carol":  # Carol keeps the default: her own items only
            grant(api, user["id"], deal="department")
        token = api.post(f"/api/users/{user['id']}/tokens", json={"name": "probe"}).json()
        ids[name], emails[name] = user["id"], user["email"]
        clients[name] = httpx.Client(
            base_url=str(api.base_url),
            headers={"Authorization": f"Bearer {token['token']}"},
            timeout=10,
        )
    try:
        yield Office(api, clients["alice"], clients["bob"], clients["carol"], ids, emails, clock)
    finally:
        for client in clients.values():
            client.close()


def contact_ids(client: httpx.Client, card_id: int) -> list[int]:
    return [c["id"] for c in client.get(f"/api/cards/{card_id}").json()["contacts"]]


# --- contacts follow the access rights ----------------------------------------------------


def test_another_departments_customer_cannot_be_pulled_onto_ones_own_card(
    office: Office, worker: None
) -> None:
    bobs = office.card(
        office.bob, "bob", contact_phones=["06 12 34 56 78"], contact_emails=[CUSTOMER_MAIL]
    )
    assert office.alice.get(f"/api/cards/{bobs['id']}").status_code == 404

    by_phone = office.alice.post(
        "/api/cards",
        json={
            "title": "Mine now",
            "entity_type": "deal",
            "stage": "new",
            "responsible_id": office.ids["alice"],
            "contact_phones": ["+33 6 12 34 56 78"],
        },
    )
    assert by_phone.status_code == 403, by_phone.text
    said = by_phone.json()["detail"]
    assert CUSTOMER_PHONE in said and "ask" in said and "administrator" in said
    assert CUSTOMER_MAIL not in said  # what she gave, never the contact's other details
    by_mail = office.alice.post(
        "/api/cards",
        json={
            "title": "Mine now",
            "entity_type": "deal",
            "stage": "new",
            "responsible_id": office.ids["alice"],
            "contact_emails": ["Customer@Client.example"],
        },
    )
    assert by_mail.status_code == 403 and CUSTOMER_MAIL in by_mail.json()["detail"]
    # Nothing was made, and the customer's next call rings on Bob's card
    deals = office.admin.get("/api/kanban", params={"entity_type": "deal"}).json()["cards"]
    assert [c["id"] for c in deals] == [bobs["id"]]
    hook = source(office.admin)
    post_signed(
        office.admin, hook, call(CUSTOMER_PHONE, "next", office.emails["bob"]), office.clock
    )
    wait_for(lambda: all_done(office.admin, 1), what="the customer's call")
    assert [e["call_id"] for e in history(office.admin, bobs["id"])] == ["next"]
    # An administrator may link any contact
    office.card(office.admin, "alice", contact_phones=[CUSTOMER_PHONE])


def test_a_contact_one_may_read_or_on_no_card_is_free_to_link(office: Office, worker: None) -> None:
    carols = office.card(office.carol, "carol", contact_emails=["shared@client.example"])
    mine = office.card(office.alice, "alice", contact_emails=["shared@client.example"])
    assert contact_ids(office.alice, mine["id"]) == contact_ids(office.admin, carols["id"])
    # A call from a number nobody has a card for: the contact is made, on no card
    hook = source(office.admin)
    post_signed(
        office.admin, hook, call("+44 20 7946 0958", "lone", office.emails["bob"]), office.clock
    )
    wait_for(lambda: all_done(office.admin, 1), what="the unmatched call")
    [waiting] = office.admin.get("/api/unmatched").json()["items"]
    assert "contact" in waiting["reason"]
    card = office.card(office.alice, "alice", contact_phones=["+442079460958"])
    [contact] = card["contacts"]
    assert (
        contact["phones"] == ["+442079460958"] and f"contact {contact['id']}" in (waiting["reason"])
    )


def test_archiving_a_mail_of_another_departments_customer_does_not_link_them(
    office: Office, smtp_server: tuple[str, int], worker: None
) -> None:
    bobs = office.card(
        office.bob, "bob", contact_phones=[CUSTOMER_PHONE], contact_emails=[CUSTOMER_MAIL]
    )
    mine = office.card(office.alice, "alice")
    address = office.alice.post(f"/api/cards/{mine['id']}/archive-address").json()["address"]
    for sender in (f"Customer <{CUSTOMER_MAIL}>", "Newcomer <new@elsewhere.example>"):
        original = make_mail(sender, office.emails["alice"], subject=f"Order of {sender}")
        forward = make_mail(f"Alice <{office.emails['alice']}>", address, subject="Fwd: order")
        forward.add_attachment(original)  # forwarded as an attachment (message/rfc822)
        send(smtp_server, forward, address, office.emails["alice"])
    wait_for(lambda: len(history(office.alice, mine["id"])) == 2, what="both forwards")
    senders = {e["from"]["address"] for e in history(office.alice, mine["id"])}
    assert senders == {CUSTOMER_MAIL, "new@elsewhere.example"}
    # The mail is Alice's to keep; the customer stays Bob's, the newcomer becomes hers
    emails = [
        e
        for c in office.alice.get(f"/api/cards/{mine['id']}").json()["contacts"]
        for e in c["emails"]
    ]
    assert emails == ["new@elsewhere.example"]
    hook = source(office.admin)
    post_signed(
        office.admin, hook, call(CUSTOMER_PHONE, "after", office.emails["bob"]), office.clock
    )
    wait_for(
        lambda: [e.get("call_id") for e in history(office.admin, bobs["id"])] == ["after"],
        what="the customer's call on Bob's card",
    )


def test_an_activity_names_only_contacts_one_may_see(office: Office) -> None:
    bobs = office.card(office.bob, "bob", contact_emails=[CUSTOMER_MAIL])
    carols = office.card(office.carol, "carol", contact_emails=["shared@client.example"])
    mine = office.card(office.alice, "alice")
    [hidden] = contact_ids(office.admin, bobs["id"])
    [shared] = contact_ids(office.admin, carols["id"])
    body = {"card_id": mine["id"], "type": "task", "responsible_id": office.ids["alice"]}
    refused = office.alice.post("/api/activities", json={**body, "contact_ids": [hidden]})
    assert refused.status_code == 403 and f"contact {hidden} is on a card" in refused.text
    made = office.alice.post("/api/activities", json={**body, "contact_ids": [shared]})
    assert made.status_code == 201 and made.json()["contact_ids"] == [shared]
    edit = office.alice.patch(
        f"/api/activities/{made.json()['id']}", json={"contact_ids": [shared, hidden]}
    )
    assert edit.status_code == 403
    assert office.admin.get(f"/api/activities/{made.json()['id']}").json()["contact_ids"] == [
        shared
    ]


# --- an activity's responsible --------------------------------------------------------------


def test_an_activity_is_handed_only_to_whom_one_may_hand_a_card(office: Office) -> None:
    mine = office.card(office.alice, "alice")
    planned = office.admin.get(f"/api/users/{office.ids['bob']}/counters").json()["planned"]
    # Bob is in Support: Alice may not give him a card, nor an activity
    assert (
        office.alice.post(
            "/api/cards",
            json={
                "title": "x",
                "entity_type": "deal",
                "stage": "new",
                "responsible_id": office.ids["bob"],
            },
        ).status_code
        == 403
    )
    refused = office.task(office.alice, [mine["id"]], "bob")
    assert refused.status_code == 403, refused.text
    assert "responsible_id" in refused.json()["detail"] and "add level" in refused.json()["detail"]
    first = office.task(office.alice, [mine["id"]], "alice").json()
    second = office.task(office.alice, [mine["id"]], "alice").json()
    patched = office.alice.patch(
        f"/api/activities/{first['id']}", json={"responsible_id": office.ids["bob"]}
    )
    assert patched.status_code == 403
    for body in (
        {"action": "assign", "responsible_id": office.ids["bob"]},
        {"action": "edit", "changes": {"responsible_id": office.ids["bob"]}},
    ):
        bulk = office.alice.post(
            "/api/activities/bulk", json={"ids": [first["id"], second["id"]], **body}
        )
        assert bulk.status_code == 403, (body, bulk.text)
    assert office.admin.get(f"/api/users/{office.ids['bob']}/counters").json()["planned"] == planned
    for activity in (first, second):
        seen = office.admin.get(f"/api/activities/{activity['id']}").json()
        assert seen["responsible_id"] == office.ids["alice"]
    # Carol is in Sales: Alice may hand her work, one by one or in bulk
    assert office.task(office.alice, [mine["id"]], "carol").status_code == 201
    bulk = office.alice.post(
        "/api/activities/bulk",
        json={
            "ids": [first["id"], second["id"]],
            "action": "assign",
            "responsible_id": office.ids["carol"],
        },
    )
    assert bulk.status_code == 200 and bulk.json()["changed"] == 2
    # Carol (own items only) may make herself responsible, but hand nothing to Alice
    carols = office.card(office.carol, "carol")
    assert office.task(office.carol, [carols["id"]], "carol").status_code == 201
    assert office.task(office.carol, [carols["id"]], "alice").status_code == 403


def test_the_responsible_sees_and_closes_what_was_handed_to_them(office: Office) -> None:
    mine = office.card(office.alice, "alice")
    assert office.carol.get(f"/api/cards/{mine['id']}").status_code == 404
    handed = office.task(office.alice, [mine["id"]], "carol")
    assert handed.status_code == 201, handed.text
    task = handed.json()
    other = office.task(office.alice, [mine["id"]], "carol").json()

    seen = office.carol.get(f"/api/activities/{task['id']}")
    assert seen.status_code == 200
    assert (seen.json()["card_id"], seen.json()["card_ids"]) == (None, [])
    listed = office.carol.get("/api/activities").json()["items"]
    assert {a["id"]: a["card_id"] for a in listed} == {task["id"]: None, other["id"]: None}
    span = {"view": "day", "from": (office.clock() + timedelta(days=2)).date().isoformat()}
    calendar = office.carol.get(
        "/api/calendar", params={"users": str(office.ids["carol"]), "timezone": "UTC", **span}
    ).json()
    [day] = [u["activities"] for u in calendar["users"]]
    assert [(a["id"], a["card_id"]) for a in day] == [(task["id"], None), (other["id"], None)]
    # She may close it (in bulk too), not edit it: the card is not hers
    assert (
        office.carol.patch(f"/api/activities/{task['id']}", json={"subject": "x"}).status_code
        == 403
    )
    closed = office.carol.post(f"/api/activities/{task['id']}/close", json={})
    assert closed.status_code == 200, closed.text
    assert (closed.json()["is_open"], closed.json()["card_id"]) == (False, None)
    done = office.carol.post("/api/activities/bulk", json={"ids": [other["id"]], "action": "done"})
    assert done.status_code == 200, done.text
    closings = [e for e in history(office.alice, mine["id"]) if e["type"] == "task_closed"]
    assert {e["by"]["id"] for e in closings} == {office.ids["carol"]} and len(closings) == 2
    # Reopening stays with who may edit the card
    assert office.carol.post(f"/api/activities/{task['id']}/reopen").status_code == 403


def test_an_activity_names_only_the_main_card_one_may_read(office: Office) -> None:
    bobs = office.card(office.bob, "bob")
    mine = office.card(office.alice, "alice")
    shared = office.task(office.admin, [bobs["id"], mine["id"]], "bob").json()
    assert office.alice.get(f"/api/cards/{bobs['id']}").status_code == 404
    seen = office.alice.get(f"/api/activities/{shared['id']}").json()
    assert (seen["card_id"], seen["card_ids"]) == (None, [mine["id"]])
    listed = office.alice.get("/api/activities", params={"card_id": mine["id"]}).json()["items"]
    assert [(a["id"], a["card_id"], a["card_ids"]) for a in listed] == [
        (shared["id"], None, [mine["id"]])
    ]
    span = {"view": "day", "from": (office.clock() + timedelta(days=2)).date().isoformat()}
    calendar = office.alice.get(
        "/api/calendar", params={"users": str(office.ids["bob"]), "timezone": "UTC", **span}
    ).json()
    [[shown]] = [u["activities"] for u in calendar["users"]]
    assert (shown["id"], shown["card_id"], shown["card_ids"]) == (shared["id"], None, [mine["id"]])
    # Bob sees his card only, the administrator both
    seen = office.bob.get(f"/api/activities/{shared['id']}").json()
    assert (seen["card_id"], seen["card_ids"]) == (bobs["id"], [bobs["id"]])
    seen = office.admin.get(f"/api/activities/{shared['id']}").json()
    assert (seen["card_id"], seen["card_ids"]) == (bobs["id"], [bobs["id"], mine["id"]])
    # An activity of hers on a card she may not read: none named
    hers = office.task(office.admin, [bobs["id"]], "alice").json()
    reopened = office.alice.get(f"/api/activities/{hers['id']}").json()
    assert (reopened["card_id"], reopened["card_ids"]) == (None, [])
    closed = office.alice.post(f"/api/activities/{hers['id']}/close", json={}).json()
    assert (closed["card_id"], closed["card_ids"]) == (None, [])


# --- a document's media type ----------------------------------------------------------------


def upload(client: httpx.Client, card_id: int, content_type: str | bytes | None) -> httpx.Response:
    """Upload with this Content-Type (bytes: sent as they are, e.g. Latin-1; None: none)."""
    if isinstance(content_type, str):
        content_type = content_type.encode("ascii")
    headers = {} if content_type is None else {b"Content-Type": content_type}
    return client.post(
        f"/api/cards/{card_id}/documents",
        params={"name": "a.txt"},
        content=b"hello",
        headers=headers,
    )


def test_a_document_type_must_be_a_media_type(office: Office, runtime: Runtime) -> None:
    mine = office.card(office.alice, "alice")
    for given, stored in (
        ('text/plain; charset="utf-8"', 'text/plain; charset="utf-8"'),
        ("application/vnd.ms-excel ; q=1;", "application/vnd.ms-excel ; q=1;"),
        (None, "application/octet-stream"),
    ):
        made = upload(office.alice, mine["id"], given)
        assert made.status_code == 201, (given, made.text)
        assert made.json()["media_type"] == stored
        served = office.alice.get(f"/api/documents/{made.json()['id']}/content")
        assert served.status_code == 200 and served.headers["content-type"] == stored
    before = office.alice.get(f"/api/cards/{mine['id']}/documents").json()["items"]
    for bad in (
        "text",
        "text/",
        "/plain",
        "text/plain; charset",
        "text/pl ain",
        "text/plain; a=b c",
        'text/plain; a="unterminated',
        "text/plain; name=\N{LATIN SMALL LETTER E WITH ACUTE}".encode("latin-1"),
        "application/" + "x" * 300,
    ):
        refused = upload(office.alice, mine["id"], bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["detail"].startswith("Content-Type: "), refused.text
    assert office.alice.get(f"/api/cards/{mine['id']}/documents").json()["items"] == before

    # A type stored before the check (Cyrillic, a line break): served as bytes, never a 500
    legacy = before[0]["id"]
    with runtime.engine.begin() as conn:
        conn.execute(
            text("UPDATE documents SET media_type = :t WHERE id = :i"),
            {"t": "application/x-\u043f\u0440\u0438\r\nX-Evil: 1", "i": legacy},
        )
    served = office.alice.get(f"/api/documents/{legacy}/content")
    assert served.status_code == 200 and served.content == b"hello"
    assert served.headers["content-type"] == "application/octet-stream"
    assert "x-evil" not in served.headers


def test_a_mail_files_odd_type_is_kept_as_bytes(
    office: Office, smtp_server: tuple[str, int], worker: None
) -> None:
    mine = office.card(office.alice, "alice")
    address = office.alice.post(f"/api/cards/{mine['id']}/archive-address").json()["address"]
    mail = make_mail(f"Alice <{office.emails['alice']}>", address, subject="Files")
    mail.add_attachment(b"odd", maintype="application", subtype="octet-stream", filename="a.bin")
    raw = mail.as_bytes(policy=SMTP).replace(
        b"Content-Type: application/octet-stream",
        "Content-Type: application/x-\u043f\u0440\u0438".encode(),
    )
    send(smtp_server, raw, address, office.emails["alice"])
    wait_for(
        lambda: office.alice.get(f"/api/cards/{mine['id']}/documents").json()["items"],
        what="the file",
    )
    [document] = office.alice.get(f"/api/cards/{mine['id']}/documents").json()["items"]
    assert document["media_type"] == "application/octet-stream"
    served = office.alice.get(f"/api/documents/{document['id']}/content")
    assert served.status_code == 200 and served.content == b"odd"
