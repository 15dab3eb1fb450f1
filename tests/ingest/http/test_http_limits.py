"""The HTTP door's limits over real HTTP (uvicorn): /api checks the credentials before it
reads a body, every body has a cap (by Content-Length, then by the bytes read, chunked
bodies too), uploads have their own, and a request head that does not come in time closes
its connection.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.orm import Session

from crm_core import accounts
from crm_core.permissions import Actor
from tests.conftest import API_TOKEN
from tests.support.helpers import create_card, create_user

CAP = 4096  # CRM_API_MAX_BODY_BYTES of these tests
UPLOAD_CAP = 16384  # CRM_UPLOAD_MAX_BYTES
# A body the client says is 400 MiB; the tests send only its first bytes.
HUGE = 400 * 1024 * 1024
small_caps = pytest.mark.settings(api_max_body_bytes=CAP, upload_max_bytes=UPLOAD_CAP)


def connect(api: httpx.Client) -> socket.socket:
    address = urlsplit(str(api.base_url))
    return socket.create_connection((address.hostname, address.port), timeout=30)


def head(method: str, path: str, *lines: str) -> bytes:
    text = f"{method} {path} HTTP/1.1\r\nHost: crm.test\r\n" + "".join(f"{x}\r\n" for x in lines)
    return (text + "\r\n").encode()


def read_answer(conn: socket.socket) -> tuple[int, dict[str, str], Any]:
    """The answer, read until the server closes the connection (a refusal closes it: the
    rest of the body is never read)."""
    raw = b""
    while chunk := conn.recv(65536):
        raw += chunk
    top, _, body = raw.partition(b"\r\n\r\n")
    status_line, *fields = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def read_kept_alive(conn: socket.socket) -> bytes:
    """One answer (with its Content-Length) on a connection that stays open."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += conn.recv(65536)
    top = raw.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    length = int(top.partition("content-length:")[2].split("\r\n")[0])
    while len(raw.partition(b"\r\n\r\n")[2]) < length:
        raw += conn.recv(65536)
    return raw


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# --- credentials before the body ---------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        [],
        ["Authorization: Bearer wrong-token"],
        ["Cookie: crm_session=forged", "X-Requested-With: crm-ui"],
    ],
    ids=["no token", "wrong token", "forged cookie"],
)
def test_a_stranger_gets_401_before_the_body_is_read(
    api: httpx.Client, credentials: list[str]
) -> None:
    with connect(api) as conn:
        # Given a request that announces 400 MiB of JSON, of which only the head and the
        # first 64 KiB are ever sent
        length = f"Content-Length: {HUGE}"
        conn.sendall(
            head("POST", "/api/cards", length, "Content-Type: application/json", *credentials)
        )
        conn.sendall(b"[" * 65536)
        # Then the answer is 401, as from the route, while the body is still unsent: it
        # was not waited for; the connection closes (the rest is never read)
        status, headers, body = read_answer(conn)
    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert headers["connection"] == "close"
    assert body == {"detail": "missing or wrong bearer token"}


def test_a_change_made_with_a_cookie_but_not_the_page_header_is_refused_before_the_body(
    api: httpx.Client,
) -> None:
    with connect(api) as conn:
        conn.sendall(head("POST", "/api/cards", f"Content-Length: {HUGE}", "Cookie: crm_session=x"))
        status, _, body = read_answer(conn)
    assert status == 403 and "X-Requested-With" in body["detail"]


def test_the_token_still_works_and_acting_for_a_user_too(api: httpx.Client) -> None:
    """What the gate lets through works as before; X-Acting-User is checked by the routes."""
    user = create_user(api, "anna@example.com")
    assert create_card(api, user["id"])["responsible_id"] == user["id"]
    as_anna = {"X-Acting-User": str(user["id"])}
    assert api.get("/ui/session", headers=as_anna).json() == {"user_id": user["id"], "admin": True}
    assert api.get("/api/kanban", headers=as_anna).status_code == 200
    unknown = api.get("/api/kanban", headers={"X-Acting-User": "999999"})
    assert unknown.status_code == 404 and "X-Acting-User" in unknown.json()["detail"]
    assert api.get("/api/kanban", headers={"X-Acting-User": "x"}).status_code == 422
    # Routes that need no token keep working without one
    assert httpx.get(f"{api.base_url}/healthz").status_code == 200
    assert httpx.get(f"{api.base_url}/ui/").status_code == 200


def test_the_gate_looks_a_token_up_once_per_request(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The routes reuse the actor the gate found: no second database look-up."""
    user = create_user(api, "anna@example.com")
    token = api.post(f"/api/users/{user['id']}/tokens", json={"name": "t"}).json()["token"]
    looked_up: list[str] = []
    original = accounts.actor_for_token

    def counted(session: Session, presented: str) -> Actor | None:
        looked_up.append(presented)
        return original(session, presented)

    monkeypatch.setattr(accounts, "actor_for_token", counted)
    own = {"Authorization": f"Bearer {token}"}
    assert api.get(f"/api/users/{user['id']}/counters", headers=own).status_code == 200
    assert looked_up == [token]


# --- body caps ---------------------------------------------------------------------------


@small_caps
def test_a_body_over_the_cap_is_refused_by_its_length_before_it_is_read(
    api: httpx.Client,
) -> None:
    with connect(api) as conn:
        conn.sendall(
            head(
                "POST",
                "/api/cards",
                f"Content-Length: {HUGE}",
                "Content-Type: application/json",
                f"Authorization: Bearer {API_TOKEN}",
            )
        )
        status, headers, body = read_answer(conn)
    assert status == 413 and headers["connection"] == "close"
    assert body == {"detail": f"the body is larger than {CAP} bytes"}
    # The same through an ordinary client, which sends its whole body
    over = api.post("/api/cards", json={"title": "x" * CAP})
    assert over.status_code == 413
    # and a body within the cap is read as ever
    user = create_user(api, "anna@example.com")
    assert create_card(api, user["id"])["id"] > 0


@small_caps
def test_a_chunked_body_is_refused_once_the_bytes_read_pass_the_cap(api: httpx.Client) -> None:
    with connect(api) as conn:
        # Given a chunked body (no Content-Length) that goes past the cap and never ends
        conn.sendall(
            head(
                "POST",
                "/api/cards",
                "Transfer-Encoding: chunked",
                "Content-Type: application/json",
                f"Authorization: Bearer {API_TOKEN}",
            )
        )
        for _ in range(CAP // 1024 + 2):
            conn.sendall(chunk(b" " * 1024))
        # Then 413 comes without the end of the body
        status, headers, body = read_answer(conn)
    assert status == 413 and headers["connection"] == "close"
    assert body == {"detail": f"the body is larger than {CAP} bytes"}

    # A chunked body within the cap is read to its end, as ever
    user = create_user(api, "anna@example.com")
    card = {"title": "Chunked", "entity_type": "deal", "stage": "new", "responsible_id": user["id"]}
    raw = json.dumps(card).encode()
    created = api.post(
        "/api/cards",
        content=iter([raw[:10], raw[10:]]),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in created.request.headers
    assert created.status_code == 201, created.text


@small_caps
def test_uploads_have_their_own_cap(api: httpx.Client) -> None:
    user = create_user(api, "anna@example.com")
    card = create_card(api, user["id"])
    path = f"/api/cards/{card['id']}/documents"

    def upload(content: Any) -> httpx.Response:
        return api.post(
            path,
            params={"name": "quote.pdf"},
            content=content,
            headers={"Content-Type": "application/pdf"},
        )

    # A file over the API's cap but within the upload cap is taken
    assert upload(b"%" * (CAP * 2)).status_code == 201
    # One over the upload cap is refused, by its length or by the bytes read
    by_length = upload(b"%" * (UPLOAD_CAP + 1))
    assert by_length.status_code == 413
    assert by_length.json() == {"detail": f"the body is larger than {UPLOAD_CAP} bytes"}
    chunked = upload(iter([b"%" * 8192] * 3))
    assert chunked.status_code == 413
    assert [d["file_name"] for d in api.get(path).json()["items"]] == ["quote.pdf"]


@pytest.mark.settings(api_max_body_bytes=CAP, hook_max_body_bytes=65536)
def test_other_routes_have_a_cap_and_the_hooks_keep_theirs(api: httpx.Client) -> None:
    # Signing the page in is capped like the API
    sign_in = api.post("/ui/session", json={"token": "x" * CAP})
    assert sign_in.status_code == 413
    # A hook's body over the API's cap is read (its signature is then checked: 401 here),
    # and one over the hooks' cap is refused
    hook = api.post("/api/sources", json={"kind": "calllog", "name": "PBX"}).json()
    hook_path = urlsplit(hook["hook_url"]).path
    assert api.post(hook_path, content=b"x" * (CAP * 2)).status_code == 401
    huge = api.post(hook_path, content=b"x" * 65537)
    assert (
        huge.status_code == 413 and huge.json()["detail"] == "the body is larger than 65536 bytes"
    )


# --- header-read timeout -----------------------------------------------------------------


@pytest.mark.settings(http_header_timeout_seconds=0.3)
def test_a_request_head_that_does_not_come_in_time_closes_the_connection(
    api: httpx.Client,
) -> None:
    # A client that sends a header line every 0.1 s and never ends its head (slowloris)
    # is cut off; it would have gone on for 30 s
    with connect(api) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: crm.test\r\n")
        assert drip_until_closed(conn, lines=300)
    # A client that says nothing at all is cut off too
    with connect(api) as conn:
        assert conn.recv(1024) == b""
    # After an answer on a kept-alive connection, the next head has the same deadline
    with connect(api) as conn:
        conn.sendall(head("GET", "/healthz"))
        assert read_kept_alive(conn).startswith(b"HTTP/1.1 200")
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert conn.recv(65536) == b""
    # A head sent in pieces, but in time, is answered
    with connect(api) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        conn.sendall(b"Host: crm.test\r\nConnection: close\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")


def drip_until_closed(conn: socket.socket, lines: int) -> bool:
    """Send a header line every 0.1 s, `lines` at most; whether the server closed first."""
    conn.settimeout(0.1)
    for n in range(lines):
        try:
            conn.sendall(f"X-Slow-{n}: x\r\n".encode())
            if conn.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset by the server
            return True
    return False


def test_a_422_does_not_repeat_the_wrong_value(api: httpx.Client) -> None:
    """The outside probe's second run: a 1 MiB list given as the sign-in token came back
    whole in the 422 (FastAPI repeats each wrong value), 1.6 s of the event loop each; a
    few clients looping stalled every answer. The 422 says where and what, not the value."""
    huge = {"token": list(range(100_000))}
    wrong = httpx.post(f"{api.base_url}/ui/session", json=huge, timeout=60)
    assert wrong.status_code == 422
    assert wrong.json() == {
        "detail": [
            {
                "loc": ["body", "token"],
                "msg": "Input should be a valid string",
                "type": "string_type",
            }
        ]
    }
    many = api.post("/api/activities/bulk", json={"ids": ["x"] * 200, "action": "done"})
    assert many.status_code == 422 and len(many.json()["detail"]) == 50
    assert "input" not in many.text and len(many.content) < 10_000
