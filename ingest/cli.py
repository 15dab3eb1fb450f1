"""`crm-ingest`: the one entry point. `run` starts everything in one process with embedded
defaults; `smtp`, `imap`, `api`, `worker`, `sweeper` run one part each for production;
`mailbox` manages the IMAP mailboxes to read.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from crm_core import schemas, services
from crm_core.db import check_database, describe_url, unit_of_work, upgrade_schema
from crm_core.errors import CoreError, InvalidInput, NotFound
from crm_core.models import Card, InboundStatus, User, utcnow
from ingest import inbound, logs, metrics
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
from ingest.runtime import Runtime, build_runtime
from ingest.settings import Settings, SettingsError, load_settings
from ingest.sweeper import run_sweeper

log = logging.getLogger("crm-ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm-ingest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="SMTP + HTTP API + worker + sweeper in one process")
    commands.add_parser("smtp", help="the SMTP listener alone")
    commands.add_parser("imap", help="the IMAP pollers alone (one per configured mailbox)")
    commands.add_parser("api", help="the HTTP API (and webhooks) alone")
    commands.add_parser("worker", help="a Dramatiq worker alone")
    commands.add_parser("sweeper", help="the sweeper alone (re-sends unprocessed inputs)")
    commands.add_parser("migrate", help="create or upgrade the database schema")
    commands.add_parser("demo", help="demo users and cards; prints each card's archive address")
    _mailbox_parser(commands.add_parser("mailbox", help="add, list or remove IMAP mailboxes"))
    reprocess = commands.add_parser(
        "reprocess", help="send failed, rejected or held inbound items through processing again"
    )
    reprocess.add_argument("ids", nargs="+", type=int, metavar="ID", help="inbound item id")
    show = commands.add_parser("inbound", help="show an inbound item, or list them by status")
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
        runtime = _start(settings)
        try:
            return COMMANDS[args.command](runtime, args)
        finally:
            runtime.close()
    except StartupError as exc:
        print(f"crm-ingest: {exc}", file=sys.stderr)
        return 2


class StartupError(Exception):
    """The service cannot start as configured; the message names the setting to fix."""


def _start(settings: Settings) -> Runtime:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"CRM_DATA_DIR: cannot use {settings.data_dir}: {exc.strerror}"
        ) from None
    try:
        runtime = build_runtime(settings)
    except Exception as exc:
        raise StartupError(f"cannot start: {exc}") from None
    try:
        check_database(runtime.engine)
    except Exception as exc:
        runtime.close()
        where = describe_url(settings.effective_database_url())
        reason = str(exc).strip().splitlines()[0]
        raise StartupError(f"CRM_DATABASE_URL: cannot connect to {where}: {reason}") from None
    return runtime


def cmd_run(rt: Runtime, args: argparse.Namespace) -> int:
    upgrade_schema(rt.engine)
    token = _api_token(rt.settings)
    worker = rt.pipeline.start_worker(rt.settings.worker_threads)
    stop = threading.Event()
    sweeper = _start_sweeper(rt, stop)
    imap = _start_imap(rt, stop)
    s = rt.settings
    print(
        f"crm-ingest running\n"
        f"  SMTP      {s.smtp_host}:{s.smtp_port}  (archive domain {s.archive_domain})\n"
        f"  HTTP API  http://{s.http_host}:{s.http_port}/docs\n"
        f"  IMAP      the mailboxes of `crm-ingest mailbox list` (or /api/mailboxes)\n"
        f"  database  {s.effective_database_url()}\n"
        f"  API token {token}",
        flush=True,
    )
    try:
        asyncio.run(_serve(rt, token, smtp=True, http=True))
    finally:
        stop.set()
        sweeper.join(timeout=10)
        imap.join(timeout=15)
        worker.stop()
    return 0


def cmd_smtp(rt: Runtime, args: argparse.Namespace) -> int:
    _serve_metrics(rt.settings)
    asyncio.run(_serve(rt, "", smtp=True, http=False))
    return 0


def cmd_imap(rt: Runtime, args: argparse.Namespace) -> int:
    _serve_metrics(rt.settings)
    stop = threading.Event()
    thread = _start_imap(rt, stop)
    log.info("IMAP pollers started")
    try:
        _wait_for_signal()
    finally:
        stop.set()
        thread.join(timeout=15)
    return 0


def cmd_mailbox(rt: Runtime, args: argparse.Namespace) -> int:
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


def cmd_api(rt: Runtime, args: argparse.Namespace) -> int:
    asyncio.run(_serve(rt, _api_token(rt.settings), smtp=False, http=True))
    return 0


def cmd_worker(rt: Runtime, args: argparse.Namespace) -> int:
    _serve_metrics(rt.settings)
    worker = rt.pipeline.start_worker(rt.settings.worker_threads)
    log.info("worker started with %d threads", rt.settings.worker_threads)
    try:
        _wait_for_signal()
    finally:
        worker.stop()
    return 0


def cmd_sweeper(rt: Runtime, args: argparse.Namespace) -> int:
    stop = threading.Event()
    thread = _start_sweeper(rt, stop)
    try:
        _wait_for_signal()
    finally:
        stop.set()
        thread.join(timeout=10)
    return 0


def cmd_inbound(rt: Runtime, args: argparse.Namespace) -> int:
    """One item as JSON (status, reason, error, attempts...), or one line per item."""
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


def cmd_reprocess(rt: Runtime, args: argparse.Namespace) -> int:
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


def cmd_migrate(rt: Runtime, args: argparse.Namespace) -> int:
    upgrade_schema(rt.engine)
    print("database schema is up to date")
    return 0


def cmd_demo(rt: Runtime, args: argparse.Namespace) -> int:
    """Two users and three cards (made once; run it again for fresh addresses); prints each
    card's new archive address."""
    upgrade_schema(rt.engine)
    s = rt.settings
    lines = []
    with unit_of_work(rt.sessions) as session:
        users = {}
        for email, name in [
            ("anna@example.com", "Anna Sales"),
            ("boris@example.com", "Boris Lead"),
        ]:
            user = session.scalar(select(User).where(User.email == email))
            users[email] = user or services.create_user(session, email, name, "Europe/Paris")
        for owner, title, kind, stage, customer in [
            ("anna@example.com", "Acme: 40 licences", "deal", "new", "john.doe@acme.com"),
            ("anna@example.com", "Globex renewal", "deal", "negotiation", "nicholas@globex.corp"),
            ("boris@example.com", "Initech inquiry", "lead", "new", "peter@initech.example"),
        ]:
            card = session.scalar(
                select(Card).where(Card.title == title, Card.responsible_id == users[owner].id)
            ) or services.create_card(
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
            services.issue_archive_address(
                session, card.id, hash_archive_token(token), timedelta(0), utcnow()
            )
            lines.append(
                f"card {card.id} {title!r} ({kind}/{stage}, responsible {owner}): "
                f"{encode_archive_address(token, s.archive_domain)}"
            )
    print("\n".join(lines))
    return 0


COMMANDS = {
    "run": cmd_run,
    "smtp": cmd_smtp,
    "imap": cmd_imap,
    "mailbox": cmd_mailbox,
    "api": cmd_api,
    "worker": cmd_worker,
    "sweeper": cmd_sweeper,
    "migrate": cmd_migrate,
    "demo": cmd_demo,
    "reprocess": cmd_reprocess,
    "inbound": cmd_inbound,
}


async def _serve(rt: Runtime, token: str, *, smtp: bool, http: bool) -> None:
    """Serve SMTP and/or HTTP until SIGINT or SIGTERM (or until the HTTP server stops)."""
    s = rt.settings
    http_socket = _listen(s.http_host, s.http_port, "CRM_HTTP_HOST/CRM_HTTP_PORT") if http else None
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
            raise StartupError(
                f"CRM_SMTP_HOST/CRM_SMTP_PORT: cannot listen on {s.smtp_host}:{s.smtp_port}: "
                f"{exc.strerror}"
            ) from None
        log.info("SMTP listening on %s:%s", s.smtp_host, s.smtp_port)
    stop_task = asyncio.ensure_future(stop.wait())
    http_server = None
    http_task = None
    if http:
        http_server = make_http_server(create_app(rt, token), s.http_host, s.http_port)
        assert http_socket is not None
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


def _listen(host: str, port: int, names: str) -> socket.socket:
    """Bind the HTTP socket ourselves, so a taken port is reported with its setting's name."""
    try:
        return socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        raise StartupError(f"{names}: cannot listen on {host}:{port}: {exc.strerror}") from None


def _serve_metrics(settings: Settings) -> None:
    """This process's Prometheus counters on CRM_METRICS_HOST:CRM_METRICS_PORT (0: not served;
    `run` and `api` serve them at /metrics of the HTTP app instead)."""
    if not settings.metrics_port:
        return
    where = f"{settings.metrics_host}:{settings.metrics_port}"
    try:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        raise StartupError(
            f"CRM_METRICS_HOST/CRM_METRICS_PORT: cannot listen on {where}: {exc.strerror}"
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
