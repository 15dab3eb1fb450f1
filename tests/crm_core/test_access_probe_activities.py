"""The outside probe's activity findings (issue 20), replayed over real HTTP and answered as
fixed: activities are handed only to whom one may hand a card and seen by their
responsible, and an activity names only the cards its reader may read.

SPEC "Which card?", "Access rights", "History"; seeds 002, 003. Alice and Carol work in
Sales, Bob in Support; Alice and Bob may do everything with their department's deals,
Carol only with her own.
"""

from __future__ import annotations

from tests.support.helpers import history
from tests.support.office import Office

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
    calendar = office.due_day(office.carol, "carol")
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
    calendar = office.due_day(office.alice, "bob")
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
