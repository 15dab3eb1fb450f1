"""The commands on the database alone (`mailbox`, `inbound`, `migrate`, `demo`) and
`reprocess`, which also sends the items it resets to the workers.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import exists, inspect

from crm_core import card_cases, user_cases
from crm_core.db import Base, describe_url, unit_of_work, upgrade_schema
from crm_core.errors import CoreError, InvalidInput, NotFound
from crm_core.models import utcnow
from ingest import inbound_admin, processing
from ingest.cli.doors import Doors
from ingest.http.schemas.inbound import InboundOut
from ingest.mailbox import mailboxes
from ingest.mailbox.addresses import encode_archive_address, hash_archive_token, new_archive_token
from ingest.runtime import Runtime, Store


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


def mailbox_parser(parser: argparse.ArgumentParser) -> None:
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


def cmd_inbound(rt: Store, args: argparse.Namespace) -> int:
    """One item as JSON (status, reason, error, attempts...), or one line per item. Reads
    only: a database without the schema is reported, not upgraded."""
    if not inspect(rt.engine).has_table("inbound_items"):
        where = describe_url(rt.settings.effective_database_url())
        print(f"crm-ingest: {where} has no schema yet (`crm-ingest migrate`)", file=sys.stderr)
        return 1
    if args.id is not None:
        item = processing.load(rt.sessions, args.id)
        if item is None:
            print(f"crm-ingest: inbound item {args.id} does not exist", file=sys.stderr)
            return 1
        print(InboundOut.model_validate(item).model_dump_json(indent=2))
        return 0
    for item in inbound_admin.list_items(rt.sessions, args.status):
        why = item.reason or item.error or ""
        print(f"{item.id}\t{item.channel}\t{item.status}\t{item.received_at:%Y-%m-%d %H:%M}\t{why}")
    return 0


def cmd_reprocess(rt: Runtime, args: argparse.Namespace, doors: Doors) -> int:
    """Reset each item to `received` and enqueue it; a running worker processes it."""
    refused = 0
    for item_id in args.ids:
        try:
            item = inbound_admin.reprocess(rt.sessions, item_id, utcnow())
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
            email: user_cases.create_user(session, email, name, "Europe/Paris")
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
            card = card_cases.create_card(
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
            card_cases.issue_archive_address(
                session, card.id, hash_archive_token(token), timedelta(0), utcnow()
            )
            lines.append(
                f"card {card.id} {title!r} ({kind}/{stage}, responsible {owner}): "
                f"{encode_archive_address(token, s.archive_domain)}"
            )
    print("\n".join(lines))
    return 0
