"""The commands that serve: `run` (everything in one process) and each part alone
(`smtp`, `imap`, `api`, `worker`, `sweeper`), with the servers and threads they start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import threading
from datetime import timedelta
from pathlib import Path

from crm_core.db import describe_url, upgrade_schema
from ingest.cli.doors import Doors, StartupError, door_error
from ingest.http.app import create_app
from ingest.http.server import make_http_server
from ingest.mailbox.imap_poller import ImapService
from ingest.mailbox.sender_auth import make_sender_verifier
from ingest.mailbox.smtp_handler import make_archive_handler
from ingest.mailbox.smtp_limits import DoorLimits
from ingest.mailbox.smtp_server import load_tls_context, start_smtp_server
from ingest.runtime import Runtime
from ingest.settings import Settings, SettingsError
from ingest.sweeper import run_sweeper

log = logging.getLogger("crm-ingest")


def cmd_run(rt: Runtime, args: argparse.Namespace, doors: Doors) -> int:
    upgrade_schema(rt.engine)
    token = _api_token(rt.settings)
    worker = rt.pipeline.start_worker(rt.settings.worker_threads)
    stop = threading.Event()
    sweeper = _start_sweeper(rt, stop)
    imap = _start_imap(rt, stop)
    print(banner(rt.settings, _describe_broker(rt)), flush=True)
    try:
        asyncio.run(_serve(rt, token, smtp=True, http_socket=doors.http))
    finally:
        stop.set()
        sweeper.join(timeout=10)
        imap.join(timeout=15)
        worker.stop()
    return 0


def _describe_broker(rt: Runtime) -> str:
    embedded = rt.embedded_redis
    if embedded is None:
        return "CRM_BROKER_URL"
    if embedded.owner:
        return f"embedded Redis {embedded.url} (stopped when this process exits)"
    return f"embedded Redis {embedded.url} (of process {embedded.owner_pid or '?'})"


def cmd_smtp(rt: Runtime, args: argparse.Namespace, doors: Doors) -> int:
    asyncio.run(_serve(rt, "", smtp=True, http_socket=None))
    return 0


def cmd_imap(rt: Runtime, args: argparse.Namespace, doors: Doors) -> int:
    stop = threading.Event()
    thread = _start_imap(rt, stop)
    log.info("IMAP pollers started")
    try:
        _wait_for_signal()
    finally:
        stop.set()
        thread.join(timeout=15)
    return 0


def cmd_api(rt: Runtime, args: argparse.Namespace, doors: Doors) -> int:
    asyncio.run(_serve(rt, _api_token(rt.settings), smtp=False, http_socket=doors.http))
    return 0


def cmd_worker(rt: Runtime, args: argparse.Namespace, doors: Doors) -> int:
    worker = rt.pipeline.start_worker(rt.settings.worker_threads)
    log.info("worker started with %d threads", rt.settings.worker_threads)
    try:
        _wait_for_signal()
    finally:
        worker.stop()
    return 0


def cmd_sweeper(rt: Runtime, args: argparse.Namespace, doors: Doors) -> int:
    stop = threading.Event()
    thread = _start_sweeper(rt, stop)
    try:
        _wait_for_signal()
    finally:
        stop.set()
        thread.join(timeout=10)
    return 0


async def _serve(rt: Runtime, token: str, *, smtp: bool, http_socket: socket.socket | None) -> None:
    """Serve SMTP and/or HTTP (on `http_socket`) until SIGINT or SIGTERM (or until the HTTP
    server stops)."""
    s = rt.settings
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    servers: list[asyncio.Server] = []
    if smtp:
        try:
            tls = load_tls_context(s)
        except SettingsError as exc:
            raise StartupError(str(exc)) from None
        limits = DoorLimits.from_settings(s)
        verify = make_sender_verifier(s, authserv_id=s.archive_domain)  # our SMTP hostname
        handler = make_archive_handler(
            rt.commits, rt.pipeline.enqueue, s.archive_domain, verify, limits=limits
        )
        try:
            servers.append(
                await start_smtp_server(
                    handler,
                    s.smtp_host,
                    s.smtp_port,
                    max_message_bytes=s.smtp_max_message_bytes,
                    hostname=s.archive_domain,
                    limits=limits,
                    tls=tls,
                    require_tls=s.smtp_require_tls,
                )
            )
        except OSError as exc:
            raise door_error(
                exc, "SMTP", s.smtp_host, s.smtp_port, "CRM_SMTP_HOST", "CRM_SMTP_PORT"
            ) from None
        log.info("SMTP listening on %s:%s", s.smtp_host, s.smtp_port)
    stop_task = asyncio.ensure_future(stop.wait())
    http_server = None
    http_task = None
    if http_socket is not None:
        http_server = make_http_server(create_app(rt, token), s.http_host, s.http_port)
        http_task = asyncio.ensure_future(http_server.serve(sockets=[http_socket]))
    try:
        waits = {stop_task} if http_task is None else {stop_task, http_task}
        done, _pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if http_task in done:
            http_task.result()  # e.g. the port is taken: uvicorn says why and exits
    finally:
        stop_task.cancel()
        if http_server is not None and http_task is not None:
            http_server.should_exit = True
            await asyncio.gather(http_task, return_exceptions=True)
        for server in servers:
            server.close()
            await server.wait_closed()


def _wait_for_signal() -> None:
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    done.wait()


def _start_sweeper(rt: Runtime, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(
        target=run_sweeper,
        name="sweeper",
        args=(rt.sessions, rt.pipeline.enqueue),
        kwargs={
            "interval_seconds": rt.settings.sweep_interval_seconds,
            "older_than": timedelta(seconds=rt.settings.sweep_after_seconds),
            "stop": stop,
            "retention": timedelta(days=rt.settings.raw_retention_days)
            if rt.settings.raw_retention_days
            else None,
        },
        daemon=True,
    )
    thread.start()
    return thread


def _start_imap(rt: Runtime, stop: threading.Event) -> threading.Thread:
    s = rt.settings
    service = ImapService(
        rt.commits,
        rt.sealer,
        rt.pipeline.enqueue,
        s.archive_domain,
        poll_seconds=s.imap_poll_seconds,
        idle_seconds=s.imap_idle_seconds,
        reload_seconds=s.imap_reload_seconds,
        ca_file=s.imap_ca_file or None,
        stop=stop,
    )
    thread = threading.Thread(target=service.run, name="imap", daemon=True)
    thread.start()
    return thread


def banner(s: Settings, broker: str) -> str:
    """What `run` prints at start. No secret given to the service is printed (terminals and
    logs are read by others): the database URL without its password, and the admin token only
    when the service generated it (it is then also in the data directory, mode 0600)."""
    token = "from CRM_API_TOKEN (not shown)" if s.api_token else _api_token(s)
    return (
        f"crm-ingest running\n"
        f"  SMTP      {s.smtp_host}:{s.smtp_port}  (archive domain {s.archive_domain})\n"
        f"  HTTP API  http://{s.http_host}:{s.http_port}/docs\n"
        f"  IMAP      the mailboxes of `crm-ingest mailbox list` (or /api/mailboxes)\n"
        f"  database  {describe_url(s.effective_database_url())}\n"
        f"  broker    {broker}\n"
        f"  API token {token}"
    )


def _api_token(settings: Settings) -> str:
    """CRM_API_TOKEN, or one generated once and kept (mode 0600) in the data directory."""
    if settings.api_token:
        return settings.api_token
    path: Path = settings.data_dir / "api_token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token
