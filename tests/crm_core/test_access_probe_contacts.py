"""The outside probe's contact findings (issue 20), replayed over real HTTP, SMTP and the
call-log webhook and answered as fixed: contacts follow the access rights, and an activity
names only the contacts its author may see.

SPEC "Which card?", "Access rights", "History"; seeds 002, 003. Alice and Carol work in
Sales, Bob in Support; Alice and Bob may do everything with their department's deals,
Carol only with her own.
"""

from __future__ import annotations

import httpx

from tests.support.calllog import all_done
from tests.support.helpers import history, make_mail, send, wait_for
from tests.support.office import Office

CUSTOMER_PHONE = "+33612345678"
CUSTOMER_MAIL = "customer@client.example"


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
    office.phone_call(CUSTOMER_PHONE, "next", "bob")
    wait_for(lambda: all_done(office.admin, 1), what="the customer's call")
    assert [e["call_id"] for e in history(office.admin, bobs["id"])] == ["next"]
    # An administrator may link any contact
    office.card(office.admin, "alice", contact_phones=[CUSTOMER_PHONE])


def test_a_contact_one_may_read_or_on_no_card_is_free_to_link(office: Office, worker: None) -> None:
    carols = office.card(office.carol, "carol", contact_emails=["shared@client.example"])
    mine = office.card(office.alice, "alice", contact_emails=["shared@client.example"])
    assert contact_ids(office.alice, mine["id"]) == contact_ids(office.admin, carols["id"])
    # A call from a number nobody has a card for: the contact is made, on no card
    office.phone_call("+44 20 7946 0958", "lone", "bob")
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
    address = office.archive_address(office.alice, mine["id"])
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
    office.phone_call(CUSTOMER_PHONE, "after", "bob")
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
