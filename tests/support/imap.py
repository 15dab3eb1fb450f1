"""IMAP test helpers: a mailbox added over the API for a Dovecot user, mails to append, our
poller in a thread, and the inputs and history entries it made."""

from __future__ import annotations

import threading
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from typing import Any

import httpx
from sqlalchemy import select

from crm_core.models import InboundItem
from ingest.mailbox.imap_poller import Poller
from ingest.runtime import Runtime
from tests.support.dovecot import Dovecot

User = tuple[str, str]


def add_mailbox(api: httpx.Client, dovecot: Dovecot, user: User, **fields: Any) -> dict[str, Any]:
    body = {
        "host": "127.0.0.1",
        "port": dovecot.port,
        "security": "none",
        "username": user[0],
        "password": user[1],
        **fields,
    }
    response = api.post("/api/mailboxes", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def mail(subject: str, headers: dict[str, str]) -> bytes:
    message = EmailMessage()
    message["From"] = "Anna Sales <anna@example.com>"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="mail.example.com")
    for name, value in headers.items():
        message[name] = value
    message.set_content(f"Body of {subject}")
    return message.as_bytes(policy=SMTP)


class PollerThread:
    """Our poller for one mailbox in a thread, as `crm-ingest imap` runs it."""

    def __init__(self, runtime: Runtime, mailbox_id: int, **options: Any) -> None:
        self.poller = Poller(
            runtime.commits,
            runtime.sealer,
            mailbox_id,
            runtime.pipeline.enqueue,
            "archive.test",
            poll_seconds=options.pop("poll_seconds", 0.2),
            **options,
        )
        self.died: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.poller.run()
        except BaseException as exc:  # the fault test's "kill": kept for the test to see
            self.died = exc

    def close(self) -> None:
        self.poller.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


def items(runtime: Runtime) -> list[InboundItem]:
    with runtime.sessions() as session:
        return list(session.scalars(select(InboundItem).order_by(InboundItem.id)))


def processed(runtime: Runtime, count: int) -> bool:
    found = items(runtime)
    return len(found) >= count and all(i.status != "received" for i in found)
