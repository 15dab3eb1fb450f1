"""SPF (RFC 7208) at the SMTP door, one of the sender checks `sender_auth` runs: the client
address against MAIL FROM's domain, or HELO's for the null reverse-path. The only pyspf import.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import spf

from ingest.mailbox.auth_results import Check
from ingest.mailbox.sender_dns import DnsTempError, Resolver

log = logging.getLogger(__name__)

# pyspf looks names up through its module function `DNSLookup`, the one hook it offers;
# it is pointed once at ours, which uses the resolver of the verification running in this
# thread (a context variable: concurrent sessions, several handlers in one process).
_spf_resolver: ContextVar[tuple[Resolver, float] | None] = ContextVar("spf_dns", default=None)
_library_spf_lookup = spf.DNSLookup


def _spf_lookup(name: str, qtype: str, strict: Any = True, timeout: float = 30) -> list[Any]:
    current = _spf_resolver.get()
    if current is None:  # pyspf used by something else than SenderVerifier
        return list(_library_spf_lookup(name, qtype, strict, timeout))
    resolver, deadline = current
    try:
        records = resolver.query(name, qtype, timeout, deadline)
    except DnsTempError as exc:
        raise spf.TempError(str(exc)) from exc
    found: list[Any] = []
    for record in records:
        if qtype in ("A", "AAAA"):
            found.append(((name, qtype), record.address))
        elif qtype == "MX":
            found.append(((name, qtype), (record.preference, record.exchange)))
        elif qtype == "PTR":
            found.append(((name, qtype), record.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            found.append(((name, qtype), record.strings))
    return found


spf.DNSLookup = _spf_lookup


@contextmanager
def _spf_through(resolver: Resolver, deadline: float) -> Iterator[None]:
    token = _spf_resolver.set((resolver, deadline))
    try:
        yield
    finally:
        _spf_resolver.reset(token)


def check_spf(
    resolver: Resolver, peer: str, helo: str, mail_from: str, deadline: float
) -> tuple[Check, str]:
    """The SPF result of the client `peer`, and the domain checked ("" without one)."""
    helo = helo.strip()
    sender = mail_from or (f"postmaster@{helo}" if helo else "")
    domain = sender.rpartition("@")[2].lower()
    identity = ("smtp.mailfrom", mail_from) if mail_from else ("smtp.helo", helo)
    if not domain:
        return Check("spf", "none", (identity,), "no MAIL FROM or HELO domain"), ""
    try:
        ipaddress.ip_address(peer)
    except ValueError:
        return Check("spf", "none", (identity,), "client address is not IP"), domain
    try:
        with _spf_through(resolver, deadline):
            query = spf.query(
                i=peer,
                s=sender,
                h=helo or domain,
                timeout=resolver.timeout,
                querytime=4 * resolver.timeout,
            )
            result, _code, explanation = query.check()
    except Exception as exc:  # pyspf on hostile input; never lose the mail over it
        log.info("SPF check failed: %r", exc)
        result, explanation = "temperror", type(exc).__name__
    comment = explanation if result in ("temperror", "permerror") else ""
    return Check("spf", str(result), (identity,), str(comment)), domain
