"""`crm-ingest`: the one entry point. `run` starts everything in one process with embedded
defaults; `smtp`, `imap`, `api`, `worker`, `sweeper` run one part each for production;
`mailbox` manages the IMAP mailboxes to read.

A command first takes its ports (or fails, naming the variable to change), then connects;
only `run`, the single parts and `reprocess` use the broker (the embedded Redis: the one
running for the data directory, else one they start and alone stop).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import TypeVar

from crm_core.db import check_database, describe_url
from crm_core.models import InboundStatus
from ingest import cli_help, logs
from ingest.cli.admin import (
    cmd_demo,
    cmd_inbound,
    cmd_mailbox,
    cmd_migrate,
    cmd_reprocess,
    mailbox_parser,
)
from ingest.cli.doors import Doors, StartupError, take_doors
from ingest.cli.serve import cmd_api, cmd_imap, cmd_run, cmd_smtp, cmd_sweeper, cmd_worker
from ingest.metrics import Figures
from ingest.runtime import Runtime, Store, build_runtime, open_store
from ingest.settings import Settings, SettingsError, load_settings


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
    mailbox_parser(command("mailbox", "add, list or remove IMAP mailboxes"))
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
        figures = Figures()  # served from the start (smtp, imap, worker), then counted into
        doors = take_doors(settings, args.command, figures)
        try:
            runtime = _start(settings, functools.partial(build_runtime, figures=figures))
            try:
                return COMMANDS[args.command](runtime, args, doors)
            finally:
                runtime.close()
        finally:
            doors.close()
    except StartupError as exc:
        print(f"crm-ingest: {exc}", file=sys.stderr)
        return 2


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
