"""The OpenAPI document is the contract: schemathesis (its own CLI, every check) runs against
the real app served by uvicorn, as the administrator (every phase) and as a plain user
(fuzzing and stateful), and must find no failure. Derandomized and bounded: the same
requests on every run. Also: one error shape everywhere, and 405 naming a path's methods.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.http.schemas.errors import ErrorOut
from tests.conftest import API_TOKEN
from tests.support.helpers import create_card, create_user

ST = Path(sys.executable).with_name("st")  # schemathesis's command, beside this Python

# schemathesis.toml: every check (`[checks]`), the stateful phase's scenarios kept short.
CONFIG = """
# Nothing kept from one run for the next (failures replayed first, examples): each run is
# the same.
[cache]
enabled = false

[generation]
deterministic = true
max-examples = {examples}
# The credentials are the test's own (`--header`): no generated cookie next to them (a
# session cookie and a bearer token are alternatives: the valid one wins).
with-security-parameters = false

[checks]
enabled = true

[phases.stateful]
max-steps = 6

# Server-Sent Events never end by themselves: read the first event, then hang up.
[[operations]]
include-name = "GET /api/events"
max-stream-events = 1
"""
# Valid requests a 422 may answer, by a rule the OpenAPI document cannot state; all it can
# state (types, bounds, patterns, enums, "a password or a token", "a card") it states.
COMPANY_NAMES = (
    "activity types and statuses are the company's settings, changed at run time (422 "
    "unknown activity type), and a new activity cannot start closed"
)
NOBODY = (
    "the admin token acting for no user must name one (X-Acting-User, or the comment's "
    "author_id): the schema cannot tie a body or a header to the credentials (422)"
)
UNSTATED_RULES = {
    "POST /api/cards": "a contact's phone is a number libphonenumber can read (422)",
    "PATCH /api/users/{user_id}": "a manager is neither the user nor one of their "
    "subordinates, as stored (422)",
    "GET /api/me/inbound": NOBODY,
    "POST /api/cards/{card_id}/comments": NOBODY,
    "POST /api/activities/{activity_id}/comments": NOBODY,
    "POST /api/activities": COMPANY_NAMES,
    "PATCH /api/activities/{activity_id}": COMPANY_NAMES,
    "POST /api/activities/{activity_id}/close": COMPANY_NAMES,
    "POST /api/activities/bulk": COMPANY_NAMES,
    "GET /api/calendar": "`to` is not before `from`, and the days exist in UTC (422)",
}
# schemathesis's default for positive_data_acceptance, plus 422.
ACCEPTED_OR_422 = '["2xx", "3xx", "401", "403", "404", "409", "429", "5xx", "422"]'


def config_text(examples: int) -> str:
    exceptions = "".join(
        f'\n# {why}\n[[operations]]\ninclude-name = "{name}"\n'
        f"checks.positive_data_acceptance.expected-statuses = {ACCEPTED_OR_422}\n"
        for name, why in UNSTATED_RULES.items()
    )
    return CONFIG.format(examples=examples) + exceptions


def run_schemathesis(
    api: httpx.Client, token: str, tmp_path: Path, examples: int, phases: str
) -> None:
    """schemathesis's run of `phases` with `token`; its report is the failure message."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(config_text(examples))
    command = [
        str(ST),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{api.base_url}/openapi.json",
        "--phases",
        phases,
        "--header",
        f"Authorization: Bearer {token}",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=280, check=False, cwd=tmp_path
    )
    report = done.stdout + done.stderr
    shown = " ".join(c if "Bearer" not in c else "Authorization: Bearer ..." for c in command)
    assert done.returncode == 0, f"{shown}\n{report[-25000:]}"


def world(api: httpx.Client) -> dict[str, Any]:
    """Rows for the generated ids to find (ids 1, 2... exist), and a plain user's token."""
    anna = create_user(api, "anna@example.com", "Anna")
    bob = create_user(api, "bob@corp.local", "Bob")
    card = create_card(api, anna["id"])
    mine = create_card(api, bob["id"], title="Bob's deal")
    for response in (
        api.post(
            "/api/activities",
            json={"card_id": card["id"], "type": "call", "responsible_id": anna["id"]},
        ),
        api.post(f"/api/cards/{card['id']}/notes", json={"text": "Called back"}),
        api.post(f"/api/cards/{mine['id']}/comments", json={"text": "Hi", "author_id": bob["id"]}),
        api.post(
            f"/api/cards/{card['id']}/documents",
            params={"name": "quote.txt"},
            content=b"quote",
            headers={"Content-Type": "text/plain"},
        ),
        api.post(f"/api/cards/{card['id']}/archive-address"),
        api.post("/api/roles", json={"name": "Sales", "permissions": {"deal": {"read": "all"}}}),
        api.post("/api/departments", json={"name": "North", "head_id": anna["id"]}),
        api.post("/api/sources", json={"kind": "calllog", "name": "Phones"}),
        api.post(
            "/api/mailboxes",
            json={
                "host": "127.0.0.1",
                "port": 1143,
                "security": "none",
                "username": "u",
                "password": "p",
            },
        ),
    ):
        assert response.status_code == 201, response.text
    token = api.post(f"/api/users/{bob['id']}/tokens", json={"name": "contract"})
    assert token.status_code == 201, token.text
    return {"user_token": token.json()["token"]}


@pytest.mark.timeout(300)  # ~100 s on SQLite, ~115 s on PostgreSQL (2 cores)
def test_the_api_keeps_its_openapi_contract_for_the_administrator(
    api: httpx.Client, tmp_path: Path
) -> None:
    world(api)
    # Coverage is the long phase (~70 s): each parameter's edge values, each unexpected method.
    run_schemathesis(api, API_TOKEN, tmp_path, 5, "examples,coverage,fuzzing,stateful")


@pytest.mark.timeout(300)
def test_the_api_keeps_its_openapi_contract_for_a_user(api: httpx.Client, tmp_path: Path) -> None:
    # What a user may not do (403) or read (404), and may: the same contract.
    user_token = world(api)["user_token"]
    run_schemathesis(api, user_token, tmp_path, 3, "fuzzing,stateful")


def test_every_error_answer_has_the_one_documented_shape(api: httpx.Client) -> None:
    """A core error's sentence and FastAPI's list of field problems are both `ErrorOut`,
    the shape the document gives every error status of every operation."""
    document = api.get("/openapi.json").json()
    shape = document["components"]["schemas"]["ErrorOut"]["properties"]["detail"]["anyOf"]
    assert [choice.get("type") for choice in shape] == ["string", "array"]
    missing = api.get("/api/cards/999")
    refused = api.post("/api/users", json={"email": "x@corp.local", "name": ""})
    stranger = httpx.get(f"{api.base_url}/api/users")
    for response, status in ((missing, 404), (refused, 422), (stranger, 401)):
        assert response.status_code == status, response.text
        ErrorOut.model_validate(response.json())
    assert isinstance(missing.json()["detail"], str)
    assert refused.json()["detail"][0]["loc"] == ["body", "name"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            errors = {c: r for c, r in operation["responses"].items() if c >= "400"}
            for answer in errors.values():
                body = (
                    answer.get("content")
                    or document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]][
                        "content"
                    ]
                )
                assert body["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorOut"
                }
            if "security" in operation:  # every authenticated route may answer 401 and 403
                assert {"401", "403"} <= set(errors), (method, path)
            if "{" in path:
                assert "404" in errors, (method, path)


def test_a_405_names_every_method_of_the_path(api: httpx.Client) -> None:
    """Starlette's 405 named one route's methods; a path has several routes."""
    for path, allowed in (
        ("/api/cards/1", "DELETE, GET, PATCH"),
        ("/ui/session", "DELETE, GET, POST"),
        ("/api/users/1/tokens", "GET, POST"),
    ):
        response = api.put(path, json={})
        assert response.status_code == 405, (path, response.text)
        assert response.headers["allow"] == allowed
