"""The web page's client side as the tests play it: a user with a token, a client that keeps
only cookies (like the page), and the app served by uvicorn on a runtime of the test's."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from crm_core.models import utcnow
from ingest.http.app import create_app
from ingest.http.server import make_http_server
from ingest.runtime import Runtime
from ingest.web.events import ChangeFeed
from tests.conftest import API_TOKEN, LoopThread
from tests.support.helpers import (
    create_user,
)

UI = {"X-Requested-With": "crm-ui"}


def user_with_token(api: httpx.Client, email: str = "anna@example.com") -> tuple[int, str]:
    user = create_user(api, email, "Anna")
    issued = api.post(f"/api/users/{user['id']}/tokens", json={"name": "browser"})
    assert issued.status_code == 201, issued.text
    return int(user["id"]), str(issued.json()["token"])


def browser(api: httpx.Client) -> httpx.Client:
    """A client like the page: no Authorization header, only what cookies it is given."""
    return httpx.Client(base_url=str(api.base_url), timeout=30)


@contextmanager
def served(runtime: Runtime) -> Iterator[tuple[Any, str, Any, ChangeFeed]]:
    """The app on its own uvicorn, for a test that stops the server itself."""
    app = create_app(runtime, API_TOKEN, clock=utcnow)
    server = make_http_server(app, "127.0.0.1", 0)
    loops = LoopThread()
    task = asyncio.run_coroutine_threadsafe(server.serve(), loops.loop)
    try:
        while not server.started:
            if task.done():
                task.result()
            threading.Event().wait(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield server, f"http://127.0.0.1:{port}", task, app.state.web_feed
    finally:
        server.should_exit = True
        loops.close()
