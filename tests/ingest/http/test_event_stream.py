"""The live-update stream (/api/events) over real HTTP: it needs a token, sends an event once a
mail sent over SMTP is processed, ends when its session signs out or its token is revoked,
and when its client goes or the server stops (never holding up a shutdown).
"""

from __future__ import annotations

import queue
import threading

import httpx
import pytest

from ingest.http.cookies import COOKIE
from ingest.runtime import Runtime
from ingest.web import events
from tests.conftest import API_TOKEN
from tests.support.helpers import (
    archive_address,
    create_card,
    history,
    make_mail,
    send,
    wait_for,
)
from tests.support.web import UI, browser, served, user_with_token


def test_an_open_stream_ends_once_its_session_signs_out(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "KEEPALIVE_SECONDS", 0.2)  # the re-check comes with these
    _, token = user_with_token(api)
    with browser(api) as page:
        assert page.post("/ui/session", json={"token": token}).status_code == 200
        reader = EventReader(page)
        assert reader.status.get(timeout=30) == 200
        assert reader.next_event() is not None  # the first "change"
        with browser(api) as other_tab:
            other_tab.cookies.set(COOKIE, page.cookies[COOKIE])
            assert other_tab.delete("/ui/session", headers=UI).status_code == 204
        assert reader.next_event(timeout=30) is None  # the server ended the stream
        reader.join()


class EventReader:
    """Reads a text/event-stream in a thread; `next_event` waits (generously) for one."""

    def __init__(self, client: httpx.Client, path: str = "/api/events") -> None:
        self.events: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.status: queue.Queue[int] = queue.Queue()
        self._client = client
        self._path = path
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._client.stream("GET", self._path) as response:
                self.status.put(response.status_code)
                name, data = "message", ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        name = line.partition(":")[2].strip()
                    elif line.startswith("data:"):
                        data = line.partition(":")[2].strip()
                    elif line == "" and data:
                        self.events.put((name, data))
                        name, data = "message", ""
        except httpx.HTTPError:
            pass
        finally:
            self.events.put(None)  # the stream ended

    def next_event(self, timeout: float = 30.0) -> tuple[str, str] | None:
        return self.events.get(timeout=timeout)

    def join(self, timeout: float = 30.0) -> None:
        self._thread.join(timeout)


def test_the_event_stream_needs_a_token(api: httpx.Client) -> None:
    with browser(api) as page:
        assert page.get("/api/events").status_code == 401


def test_an_event_arrives_once_a_mail_is_processed(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int]
) -> None:
    # Given a card with its archive address, and a page signed in with the event stream open
    user_id, token = user_with_token(api)
    card = create_card(api, user_id)
    address = archive_address(api, card["id"])
    with browser(api) as page:
        assert page.post("/ui/session", json={"token": token}).status_code == 200
        reader = EventReader(page)
        assert reader.status.get(timeout=30) == 200
        # the first event comes at once: the page fetches what it shows
        started = reader.next_event()
        assert started is not None and started[0] == "change"
        # When a mail is forwarded to the card over SMTP, no worker running yet
        send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
        # Then storing it is a change already (the inbound health page shows it)
        stored = reader.next_event(timeout=60)
        assert stored is not None and stored[0] == "change"
        assert history(api, card["id"]) == []
        # And once a worker processes it, another event comes: the history has it
        running = runtime.pipeline.start_worker(threads=1, poll_ms=100)
        try:
            processed = reader.next_event(timeout=60)
            assert processed is not None and processed[0] == "change"
            assert [e["type"] for e in history(api, card["id"])] == ["email"]
            assert api.get(f"/api/users/{user_id}/counters").json()["incoming"] == 1
        finally:
            running.stop()


def test_an_open_stream_ends_once_its_token_is_revoked(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "KEEPALIVE_SECONDS", 0.2)  # the re-check comes with these
    user_id, token = user_with_token(api)
    with browser(api) as page:
        assert page.post("/ui/session", json={"token": token}).status_code == 200
        reader = EventReader(page)
        assert reader.status.get(timeout=30) == 200
        assert reader.next_event() is not None  # the first "change"
        tokens = api.get(f"/api/users/{user_id}/tokens").json()["items"]
        api.delete(f"/api/users/{user_id}/tokens/{tokens[0]['id']}")
        assert reader.next_event(timeout=30) is None  # the server ended the stream
        reader.join()


def test_streams_end_when_their_client_goes_and_when_the_server_stops(runtime: Runtime) -> None:
    with served(runtime) as (server, url, task, feed):
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30
        )
        # Given a page listening to the event stream
        reader = EventReader(client)
        assert reader.status.get(timeout=30) == 200
        assert reader.next_event() is not None
        # When another page opens the stream and goes away, its stream ends on the server
        with client.stream("GET", "/api/events") as other:
            # (the line iterator is kept: dropping it closes the connection at once)
            lines = other.iter_lines()
            assert next(lines).startswith("retry:")
            assert feed.listeners == 2
        wait_for(lambda: feed.listeners == 1, what="the gone client's stream to end")
        # When the server is asked to stop
        server.should_exit = True
        # Then it stops (uvicorn would wait forever for the open response), and the stream
        # ends on the client's side
        task.result(timeout=30)
        while reader.next_event() is not None:
            pass
        reader.join()
        client.close()
