"""A steady load for the fault suite: mail over SMTP (smtplib), calls (call-log webhook) and
chat messages (widget webhook), one sender thread per channel. Each input is retried, as a
real sender would, until a front door accepts it (SMTP 250, HTTP 2xx); every answer is kept."""

from __future__ import annotations

import contextlib
import json
import smtplib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.policy import SMTP

import httpx

from ingest.signatures import sign_timestamped
from tests.support.helpers import make_mail

CHANNELS = ("email", "call", "chat")


@dataclass(frozen=True)
class Targets:
    """Where each channel's inputs go: the cards' archive addresses, phones, contact e-mails."""

    smtp: tuple[str, int]
    api: str
    sender: str  # a CRM user: mails are from them, calls are theirs
    addresses: list[str]
    phones: list[str]
    chat_emails: list[str]
    call_hook: tuple[int, str]  # source id, secret
    chat_hook: tuple[int, str]


@dataclass
class Refusal:
    at: float  # time.monotonic()
    channel: str
    ident: str
    answer: str


@dataclass
class Record:
    """What the senders were told, per channel: identifier -> when it was accepted."""

    accepted: dict[str, dict[str, float]] = field(
        default_factory=lambda: {channel: {} for channel in CHANNELS}
    )
    # Tried and never accepted (the load stopped while it was being retried): may or may not
    # have been stored (an answer lost with its connection), but must not be in history twice.
    abandoned: dict[str, set[str]] = field(
        default_factory=lambda: {channel: set() for channel in CHANNELS}
    )
    refusals: list[Refusal] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted_before(self, moment: float) -> dict[str, set[str]]:
        with self.lock:
            return {
                channel: {ident for ident, at in done.items() if at <= moment}
                for channel, done in self.accepted.items()
            }

    def refused_between(self, start: float, end: float) -> list[Refusal]:
        with self.lock:
            return [r for r in self.refusals if start <= r.at <= end]


class Load:
    """Sender threads, started and stopped by `running()`; numbering goes on across runs."""

    def __init__(self, targets: Targets, pace_seconds: float = 0.2) -> None:
        self.targets = targets
        self.pace = pace_seconds
        self.record = Record()
        self._next = dict.fromkeys(CHANNELS, 0)
        self._numbering = threading.Lock()
        self._stop = threading.Event()
        self._http = httpx.Client(base_url=targets.api, timeout=30)
        self._mails: dict[str, tuple[str, bytes]] = {}  # being retried: the same bytes

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._stop.clear()
        senders = {"email": self._mail, "call": self._call, "chat": self._chat}
        threads = [
            threading.Thread(target=self._loop, args=(channel, one), name=f"load-{channel}")
            for channel, one in senders.items()
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=120)

    def close(self) -> None:
        self._http.close()

    def _loop(self, channel: str, send_one: Callable[[str, int], str | None]) -> None:
        while not self._stop.is_set():
            n = self._number(channel, 1)
            ident = f"{channel}-{n:06d}"
            while True:
                try:
                    refused = send_one(ident, n)
                except (OSError, smtplib.SMTPException, httpx.HTTPError) as exc:
                    refused = f"{type(exc).__name__}: {exc}"
                with self.record.lock:
                    if refused is None:
                        self.record.accepted[channel][ident] = time.monotonic()
                    else:
                        self.record.refusals.append(
                            Refusal(time.monotonic(), channel, ident, refused[:300])
                        )
                if refused is None:
                    break
                if self._stop.wait(0.3):
                    with self.record.lock:
                        self.record.abandoned[channel].add(ident)
                    return
            self._stop.wait(self.pace)

    def _number(self, channel: str, count: int) -> int:
        with self._numbering:
            first = self._next[channel]
            self._next[channel] += count
            return first

    def burst(self, count: int) -> None:
        """`count` calls in one signed request (a phone system syncing its log), retried
        until accepted: that many inputs queued at once."""
        first = self._number("call", count)
        calls = [self._call_of(f"call-{n:06d}", n) for n in range(first, first + count)]
        path = f"/hooks/calllog/{self.targets.call_hook[0]}"
        while True:
            try:
                response = self._signed(path, {"calls": calls}, "call")
                answer = response.json() if response.status_code == 202 else {}
                stored = answer.get("accepted") == count and not answer["rejected"]
                refused = None if stored else f"HTTP {response.status_code} {response.text}"
            except httpx.HTTPError as exc:
                refused = f"{type(exc).__name__}: {exc}"
            with self.record.lock:
                if refused is None:
                    now = time.monotonic()
                    self.record.accepted["call"].update({str(c["call_id"]): now for c in calls})
                    return
                self.record.refusals.append(
                    Refusal(time.monotonic(), "call", f"burst of {count}", refused[:300])
                )
            time.sleep(0.3)

    # One input per channel; None when accepted, else the refusal as the sender saw it.

    def _mail(self, ident: str, n: int) -> str | None:
        if ident not in self._mails:  # the same bytes on every retry, as an MTA resends
            to = self.targets.addresses[n % len(self.targets.addresses)]
            message = make_mail(self.targets.sender, to, subject=ident, body=f"Body of {ident}")
            self._mails[ident] = (to, message.as_bytes(policy=SMTP))
        to, data = self._mails[ident]
        with smtplib.SMTP(*self.targets.smtp, timeout=30) as client:
            client.sendmail(self.targets.sender, [to], data)
        self._mails.pop(ident, None)
        return None

    def _call(self, ident: str, n: int) -> str | None:
        call = self._call_of(ident, n)
        response = self._signed(f"/hooks/calllog/{self.targets.call_hook[0]}", call, "call")
        if response.status_code != 202:
            return f"HTTP {response.status_code} {response.text}"
        answer = response.json()
        if answer["accepted"] != 1 or answer["rejected"]:
            return f"HTTP 202 but not stored: {response.text}"
        return None

    def _call_of(self, ident: str, n: int) -> dict[str, object]:
        return {
            "call_id": ident,
            "employee": self.targets.sender,
            "number": self.targets.phones[n % len(self.targets.phones)],
            "direction": "incoming",
            "outcome": "missed" if n % 2 else "answered",
            "started_at": "2026-11-22T10:15:00+01:00",
            "duration_seconds": 0 if n % 2 else 30 + n % 90,
        }

    def _chat(self, ident: str, n: int) -> str | None:
        email = self.targets.chat_emails[n % len(self.targets.chat_emails)]
        message = {
            "message_id": ident,
            "visitor": {"id": f"visitor-{email}", "name": "A visitor", "email": email},
            "text": f"Text of {ident}",
            "sent_at": "2026-11-22T10:15:00+01:00",
        }
        response = self._signed(f"/hooks/chat/{self.targets.chat_hook[0]}", message, "chat")
        if response.status_code != 202:
            return f"HTTP {response.status_code} {response.text}"
        answer = response.json()
        if answer["accepted"] != 1 or answer["rejected"]:
            return f"HTTP 202 but not stored: {response.text}"
        return None

    def _signed(self, path: str, payload: Mapping[str, object], channel: str) -> httpx.Response:
        secret = (self.targets.call_hook if channel == "call" else self.targets.chat_hook)[1]
        raw = json.dumps(payload).encode()
        stamp = str(int(time.time()))
        return self._http.post(
            path,
            content=raw,
            headers={
                "Content-Type": "application/json",
                "X-Timestamp": stamp,
                "X-Signature": sign_timestamped(secret, stamp, raw),
            },
        )
