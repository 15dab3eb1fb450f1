"""The JSON API over real HTTP: authentication, validation errors, phone normalisation."""

from __future__ import annotations

import httpx
import pytest

from tests.support.helpers import create_user


def test_requests_without_the_token_get_401(api: httpx.Client) -> None:
    anonymous = httpx.Client(base_url=str(api.base_url))
    response = anonymous.get("/api/inbound")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = anonymous.get("/api/inbound", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "missing or wrong bearer token"}


def test_the_users_are_listed_by_name(api: httpx.Client) -> None:
    create_user(api, "zoe@example.com", "Zoe Weber")
    create_user(api, "anna@example.com", "Anna Martin")
    listed = api.get("/api/users")
    assert listed.status_code == 200, listed.text
    assert [(u["name"], u["email"]) for u in listed.json()["items"]] == [
        ("Anna Martin", "anna@example.com"),
        ("Zoe Weber", "zoe@example.com"),
    ]


def test_duplicate_user_is_a_409(api: httpx.Client) -> None:
    create_user(api, "anna@example.com")
    response = api.post("/api/users", json={"email": "ANNA@example.com", "name": "Again"})
    assert response.status_code == 409
    assert response.json()["detail"] == "a user with e-mail anna@example.com already exists"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"email": "not-an-address", "name": "X"}, "email"),
        ({"email": "x@example.com", "name": ""}, "name"),
        ({"email": "x@example.com", "name": "X", "timezone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_bad_user_input_is_a_422_naming_the_field(
    api: httpx.Client, body: dict[str, str], fragment: str
) -> None:
    response = api.post("/api/users", json=body)
    assert response.status_code == 422
    assert fragment in response.text


def test_card_validation(api: httpx.Client) -> None:
    anna = create_user(api, "anna@example.com")
    base = {"title": "T", "stage": "new", "responsible_id": anna["id"]}
    bad_type = api.post("/api/cards", json={**base, "entity_type": "spaceship"})
    assert bad_type.status_code == 422
    assert bad_type.json()["detail"][0]["loc"] == ["body", "entity_type"]
    nobody = api.post("/api/cards", json={**base, "entity_type": "deal", "responsible_id": 999})
    assert (nobody.status_code, nobody.json()["detail"]) == (404, "user 999 does not exist")
    bad_phone = api.post(
        "/api/cards", json={**base, "entity_type": "lead", "contact_phones": ["12"]}
    )
    assert bad_phone.status_code == 422
    assert "'12'" in bad_phone.json()["detail"]
    assert api.get("/api/cards/999").status_code == 404
    assert api.get("/api/kanban", params={"entity_type": "spaceship"}).status_code == 422
    assert api.get("/api/inbound", params={"status": "lost"}).status_code == 422
    assert api.get("/api/inbound/12345").status_code == 404


def test_phone_numbers_written_three_ways_are_one_contact(api: httpx.Client) -> None:
    anna = create_user(api, "anna@example.com")
    response = api.post(
        "/api/cards",
        json={
            "title": "Call me",
            "entity_type": "lead",
            "stage": "new",
            "responsible_id": anna["id"],
            "contact_phones": ["06 12 34 56 78", "+33 6 12 34 56 78", "0033612345678"],
        },
    )
    assert response.status_code == 201, response.text
    [contact] = response.json()["contacts"]
    assert contact["phones"] == ["+33612345678"]


def test_read_and_unread_marks(api: httpx.Client) -> None:
    anna = create_user(api, "anna@example.com")
    card = api.post(
        "/api/cards",
        json={"title": "T", "entity_type": "deal", "stage": "new", "responsible_id": anna["id"]},
    ).json()
    assert card["unread"] is False
    assert api.post(f"/api/cards/{card['id']}/unread").status_code == 204
    assert api.get(f"/api/cards/{card['id']}").json()["unread"] is True
    assert api.post(f"/api/cards/{card['id']}/read").status_code == 204
    assert api.get(f"/api/cards/{card['id']}").json()["unread"] is False


def test_openapi_describes_the_api(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/api/users", "/api/cards/{card_id}/history", "/api/kanban", "/api/inbound"):
        assert path in paths
