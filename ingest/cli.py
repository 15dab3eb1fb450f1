"""`crm-ingest`: the one entry point. `run` starts everything in one process with embedded
defaults; `smtp`, `imap`, `api`, `worker`, `sweeper` run one part each for production;
`mailbox` manages the IMAP mailboxes to read.

A command first takes its ports (or fails, naming the variable to change), then connects;
only `run`, the single parts and `reprocess` use the broker (the embedded Redis: the one
running for the data directory, else one they start and alone stop).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import exists, inspect

from crm_core import schemas, services
from crm_core.db import Base, check_database, describe_url, unit_of_work, upgrade_schema
from crm_core.errors import CoreError, InvalidInput, NotFound
from crm_core.models import InboundStatus, utcnow
from ingest import cli_help, inbound, logs, metrics
from ingest.http_app import create_app, make_http_server
from ingest.mailbox import mailboxes
from ingest.mailbox.addresses import encode_archive_address, hash_archive_token, new_archive_token
from ingest.mailbox.imap_poller import ImapService
from ingest.mailbox.sender_auth import make_sender_verifier
from ingest.mailbox.smtp_handler import (
    DoorLimits,
    load_tls_context,
    make_archive_handler,
    start_smtp_server,
)
from ingest.runtime import Runtime, Store, build_runtime, open_store
from ingest.settings import Settings, SettingsError, load_settings
from ingest.sweeper import run_sweeper

log = logging.getLogger("crm-ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="crm-ingest", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"crm-ingest {cli_help.version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        """A sub-command whose --help ends with its ports and settings."""
        return commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=cli_help.epilog(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    command("run", "SMTP + HTTP API + worker + sweeper + IMAP pollers in one process")
    command("smtp", "the SMTP listener alone")
    command("imap", "the IMAP pollers alone (one per configured mailbox)")
    command("api", "the HTTP API (and webhooks) alone")
    command("worker", "a Dramatiq worker alone")
    command("sweeper", "the sweeper alone (re-sends unprocessed inputs)")
    command("migrate", "create or upgrade the database schema")
    command("demo", "demo users and cards; prints each card's archive address")
    _mailbox_parser(command("mailbox", "add, list or remove IMAP mailboxes"))
    reprocess = command(
        "reprocess", "send failed, rejected or held inbound items through processing again"
    )
    reprocess.add_argument("ids", nargs="+", type=int, metavar="ID", help="inbound item id")
    show = command("inbound", "show an inbound item, or list them by status")
    show.add_argument("id", nargs="?", type=int, help="inbound item id (none: a list)")
    show.add_argument("--status", choices=[s.value for s in InboundStatus], help="list filter")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"crm-ingest: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:
        if args.command in STORE_COMMANDS:
            store = _start(settings, open_store)
            try:
                return STORE_COMMANDS[args.command](store, args)
            finally:
                store.close()
        # The ports first: a command that cannot listen starts nothing (no worker, no Redis).
        doors = _take_doors(settings, args.command)
        try:
            runtime = _start(settings, build_runtime)
            try:
                return COMMANDS[args.command](runtime, args, doors)
            finally:
                runtime.close()
        finally:
            doors.close()
    except StartupError as exc:
        print(f"crm-ingest: {exc}", file=sys.stderr)
        return 2


class StartupError(Exception):
    """The service cannot start as configured; the message names the setting to fix."""


@dataclass
class Doors:
    """What a command listens on, taken before it starts anything else: the HTTP socket
    (bound here, served later), the SMTP port (checked free), the metrics server (started)."""

    http: socket.socket | None = None

    def close(self) -> None:
        if self.http is not None:
            self.http.close()


def _take_doors(settings: Settings, command: str) -> Doors:
    s = settings
    doors = Doors()
    if command in ("run", "smtp"):
        _check_free(s.smtp_host, s.smtp_port, "SMTP", "CRM_SMTP_HOST", "CRM_SMTP_PORT")
    if command in ("run", "api"):
        doors.http = _listen(s.http_host, s.http_port, "HTTP", "CRM_HTTP_HOST", "CRM_HTTP_PORT")
    if command in ("smtp", "imap", "worker"):
        try:
            _serve_metrics(s)
        except StartupError:
            doors.close()
            raise
    return doors


S = TypeVar("S", bound=Store)


def _start(settings: Settings, build: Callable[[Settings], S]) -> S:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"CRM_DATA_DIR: cannot use {settings.data_dir}: {exc.strerror}"
        ) from None
    try:
        store = build(settings)
    except Exception as exc:
        raise StartupError(f"cannot start: {exc}") from None
    try:
        check_database(store.engine)
    except Exception as exc:
        store.close()
        where = describe_url(settings.effective_database_url())
        reason = str(exc).strip().splitlines()[0]
        raise StartupError(f"CRM_DATABASE_URL: cannot connect to {where}: {reason}") from None
    return store


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


def cmd_mailbox(rt: Store, args: argparse.Namespace) -> int:
    """`mailbox add|list|remove`: the mailboxes the IMAP pollers read (as the API does)."""
    upgrade_schema(rt.engine)
    with unit_of_work(rt.sessions) as session:
        if args.action == "add":
            try:
                mailbox = mailboxes.register(
                    session,
                    rt.sealer,
                    name=args.name,
                    host=args.host,
                    port=args.port,
                    security=args.security,
                    username=args.username,
                    password=_secret(args.password_file, "CRM_MAILBOX_PASSWORD", "password")
                    if args.oauth2_token_file is None
                    else None,
                    oauth2_token=_secret(args.oauth2_token_file, "", "OAuth2 token")
                    if args.oauth2_token_file is not None
                    else None,
                    folder=args.folder,
                    processed_folder=args.processed_folder,
                )
            except (InvalidInput, ValueError) as exc:
                print(f"crm-ingest mailbox add: {exc}", file=sys.stderr)
                return 2
            print(f"mailbox {mailbox.id}: {mailbox.username}@{mailbox.host}:{mailbox.port}")
        elif args.action == "list":
            for found in mailboxes.list_mailboxes(session):
                state = "revoked" if found.revoked_at else (found.last_error or "ok")
                print(
                    f"{found.id}\t{found.username}@{found.host}:{found.port}/{found.folder}"
                    f"\t{found.security}\tuid {found.last_uid}\t{state}"
                )
        else:
            try:
                mailboxes.revoke(session, args.id, utcnow())
            except NotFound as exc:
                print(f"crm-ingest mailbox remove: {exc}", file=sys.stderr)
                return 2
            print(f"mailbox {args.id} revoked")
    return 0


def _mailbox_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser(
        "add",
        help="read a mailbox; the password comes from --password-file, CRM_MAILBOX_PASSWORD "
        "or a prompt, never from the command line",
    )
    add.add_argument("--host", required=True)
    add.add_argument("--port", type=int, default=993)
    add.add_argument("--security", choices=mailboxes.SECURITY, default="tls")
    add.add_argument("--username", required=True)
    add.add_argument("--password-file", type=Path)
    add.add_argument("--oauth2-token-file", type=Path, help="an XOAUTH2 access token instead")
    add.add_argument("--folder", default="INBOX")
    add.add_argument("--processed-folder", help="move taken messages there (else flag \\Seen)")
    add.add_argument("--name", default="")
    actions.add_parser("list", help="the mailboxes, their cursor and last error")
    remove = actions.add_parser("remove", help="stop reading a mailbox")
    remove.add_argument("id", type=int)


def _secret(path: Path | None, variable: str, what: str) -> str:
    if path is not None:
        return path.read_text().strip()
    if variable and os.environ.get(variable):
        return os.environ[variable]
    if sys.stdin.isatty():
        return getpass.getpass(f"{what}: ")
    raise ValueError(f"no {what}: give a file or set {variable or 'a file'}")


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


def cmd_inbound(rt: Store, args: argparse.Namespace) -> int:
    """One item as JSON (status, reason, error, attempts...), or one line per item. Reads
    only: a database without the schema is reported, not upgraded."""
    if not inspect(rt.engine).has_table("inbound_items"):
        where = describe_url(rt.settings.effective_database_url())
        print(f"crm-ingest: {where} has no schema yet (`crm-ingest migrate`)", file=sys.stderr)
        return 1
    if args.id is not None:
        item = inbound.load(rt.sessions, args.id)
        if item is None:
            print(f"crm-ingest: inbound item {args.id} does not exist", file=sys.stderr)
            return 1
        print(schemas.InboundOut.model_validate(item).model_dump_json(indent=2))
        return 0
    for item in inbound.list_items(rt.sessions, args.status):
        why = item.reason or item.error or ""
        print(f"{item.id}\t{item.channel}\t{item.status}\t{item.received_at:%Y-%m-%d %H:%M}\t{why}")
    return 0


def cmd_reprocess(rt: Runtime, args: argparse.Namespace, doors: Doors) -> int:
    """Reset each item to `received` and enqueue it; a running worker processes it."""
    refused = 0
    for item_id in args.ids:
        try:
            item = inbound.reprocess(rt.sessions, item_id, utcnow())
        except CoreError as exc:
            print(f"crm-ingest: {exc}", file=sys.stderr)
            refused += 1
            continue
        try:
            rt.pipeline.enqueue(item.channel, item.id)
        except Exception as exc:  # stored as received: the sweeper sends it later
            print(f"inbound item {item.id}: broker unavailable ({exc}); the sweeper will send it")
        print(f"inbound item {item.id} sent to processing again")
    return 1 if refused else 0


def cmd_migrate(rt: Store, args: argparse.Namespace) -> int:
    upgrade_schema(rt.engine)
    print("database schema is up to date")
    return 0


def cmd_demo(rt: Store, args: argparse.Namespace) -> int:
    """Two users and three cards in an empty database; prints each card's archive address.
    Refuses a database holding anything: it never changes existing data (a card's address
    rotated here would stop working for whoever uses it)."""
    upgrade_schema(rt.engine)
    s = rt.settings
    lines = []
    with unit_of_work(rt.sessions) as session:  # on SQLite: the write lock, taken up front
        filled = [t.name for t in Base.metadata.sorted_tables if session.scalar(exists(t).select())]
        if filled:
            print(
                f"crm-ingest demo: the database is not empty ({', '.join(filled)}); demo only "
                f"fills an empty one and changes nothing. Point CRM_DATA_DIR (or "
                f"CRM_DATABASE_URL) at a new one to try it.",
                file=sys.stderr,
            )
            return 1
        users = {
            email: services.create_user(session, email, name, "Europe/Paris")
            for email, name in [
                ("anna@example.com", "Anna Sales"),
                ("boris@example.com", "Boris Lead"),
            ]
        }
        for owner, title, kind, stage, customer in [
            ("anna@example.com", "Acme: 40 licences", "deal", "new", "john.doe@acme.com"),
            ("anna@example.com", "Globex renewal", "deal", "negotiation", "nicholas@globex.corp"),
            ("boris@example.com", "Initech inquiry", "lead", "new", "peter@initech.example"),
        ]:
            card = services.create_card(
                session,
                title=title,
                entity_type=kind,
                stage=stage,
                responsible_id=users[owner].id,
                contact_emails=[customer],
                contact_phones=[],
                default_region=s.default_region,
            )
            token = new_archive_token()
            # A new card has no address yet: nothing is rotated.
            services.issue_archive_address(
                session, card.id, hash_archive_token(token), timedelta(0), utcnow()
            )
            lines.append(
                f"card {card.id} {title!r} ({kind}/{stage}, responsible {owner}): "
                f"{encode_archive_address(token, s.archive_domain)}"
            )
    print("\n".join(lines))
    return 0


# Commands that use the broker (and may start the embedded Redis, which they then stop).
COMMANDS: dict[str, Callable[[Runtime, argparse.Namespace, Doors], int]] = {
    "run": cmd_run,
    "smtp": cmd_smtp,
    "imap": cmd_imap,
    "api": cmd_api,
    "worker": cmd_worker,
    "sweeper": cmd_sweeper,
    "reprocess": cmd_reprocess,
}
# Commands on the database alone: they start no Redis and stop none.
STORE_COMMANDS: dict[str, Callable[[Store, argparse.Namespace], int]] = {
    "mailbox": cmd_mailbox,
    "migrate": cmd_migrate,
    "demo": cmd_demo,
    "inbound": cmd_inbound,
}


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
            rt.sessions, rt.pipeline.enqueue, s.archive_domain, verify, limits=limits
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
            raise _door_error(
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


def _listen(host: str, port: int, what: str, host_var: str, port_var: str) -> socket.socket:
    """Bind the HTTP socket ourselves, so a taken port is reported with its setting's name."""
    try:
        return socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        raise _door_error(exc, what, host, port, host_var, port_var) from None


def _check_free(host: str, port: int, what: str, host_var: str, port_var: str) -> None:
    """Bind host:port as the server will later (every address the name stands for, with
    SO_REUSEADDR as asyncio does) and let go: a taken port stops the command before it
    starts anything."""
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"{host_var}: cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _name, address in dict.fromkeys(found):
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
                probe.listen()
        except OSError as exc:
            raise _door_error(exc, what, host, port, host_var, port_var) from None


def _door_error(
    exc: OSError, what: str, host: str, port: int, host_var: str, port_var: str
) -> StartupError:
    """Which port, for what, and which variable to change."""
    if exc.errno == errno.EADDRINUSE:
        return StartupError(
            f"{port_var}: the {what} port {port} on {host} is already in use (another "
            f"crm-ingest?); nothing was started. Stop what listens there, or set {port_var} "
            f"to a free port."
        )
    return StartupError(
        f"{host_var}/{port_var}: cannot listen on {host}:{port} for {what}: {exc.strerror}; "
        f"nothing was started."
    )


def _serve_metrics(settings: Settings) -> None:
    """This process's Prometheus counters on CRM_METRICS_HOST:CRM_METRICS_PORT (0: not served;
    `run` and `api` serve them at /metrics of the HTTP app instead)."""
    if not settings.metrics_port:
        return
    where = f"{settings.metrics_host}:{settings.metrics_port}"
    try:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        raise _door_error(
            exc,
            "metrics",
            settings.metrics_host,
            settings.metrics_port,
            "CRM_METRICS_HOST",
            "CRM_METRICS_PORT",
        ) from None
    log.info("Prometheus metrics at http://%s/metrics", where)


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
        rt.sessions,
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


if __name__ == "__main__":
    sys.exit(main())
