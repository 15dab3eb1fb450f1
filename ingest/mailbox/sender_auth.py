"""Sender trust at the SMTP door: SPF, DKIM and DMARC of a message as it arrives.

Runs in a thread before the message is stored (ArchiveHandler's `verify`); the only module
importing dkimpy, pyspf, dnspython and publicsuffixlist. All DNS goes through one resolver.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import dkim
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import spf
from publicsuffixlist import PublicSuffixList

from ingest.mailbox.parsing import strict_from
from ingest.settings import Settings

log = logging.getLogger(__name__)

MAX_DKIM_SIGNATURES = 5  # more are not checked (each costs a DNS lookup)
# All lookups of one message together take at most this many timeouts: a DNS server that
# does not answer delays a mail by about 3 x CRM_DNS_TIMEOUT_SECONDS, then it is temperror.
LOOKUP_BUDGET = 3
# DMARC policies under which a failing From is refused at the door (RFC 7489 section 6.3).
# We have no quarantine folder: the archive is the user's record, so "quarantine" is refused
# as well. p=none asks receivers not to act: such mail is accepted, the failure recorded.
REFUSING_POLICIES = ("reject", "quarantine")


class DnsTempError(Exception):
    """A DNS lookup timed out or no server answered: results are `temperror`."""


@dataclass(frozen=True)
class Arrival:
    """What the SMTP session knows of a message: the bytes as received and the envelope."""

    raw: bytes
    peer: str  # the client's IP address
    helo: str
    mail_from: str  # "" for the null reverse-path


@dataclass(frozen=True)
class Check:
    """One method's result (RFC 8601 section 2.7), e.g. dkim=pass header.d=example.com."""

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()
    comment: str = ""

    def render(self) -> str:
        text = f"{self.method}={self.result}"
        if self.comment:
            text += f" ({_comment(self.comment)})"
        for name, value in self.properties:
            text += f" {name}={_value(value)}"
        return text


@dataclass(frozen=True)
class Verdict:
    """The message to store (our Authentication-Results first) or the SMTP refusal."""

    raw: bytes
    checks: list[Check] = field(default_factory=list)
    refusal: str = ""

    def result(self, method: str) -> str:
        return next((c.result for c in self.checks if c.method == method), "")


class Resolver:
    """DNS through the configured servers ("host:port,..."; "" = the system's) with a
    timeout per lookup; "no such record" is an empty answer, a failure is DnsTempError."""

    def __init__(self, servers: str, timeout: float) -> None:
        self.timeout = timeout
        self._problem = ""
        listed = [part.strip() for part in servers.split(",") if part.strip()]
        try:
            self._resolver = dns.resolver.Resolver(configure=not listed)
        except dns.resolver.NoResolverConfiguration as exc:  # no /etc/resolv.conf
            self._resolver = dns.resolver.Resolver(configure=False)
            self._problem = f"no DNS configuration ({exc})"
        if listed:
            nameservers: list[str | dns.nameserver.Nameserver] = []
            for server in listed:
                host, _, port = server.rpartition(":")
                nameservers.append(dns.nameserver.Do53Nameserver(host.strip("[]"), int(port)))
            self._resolver.nameservers = nameservers
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._resolver.retry_servfail = False

    def query(
        self, name: str, rdtype: str, timeout: float | None = None, deadline: float = 0
    ) -> list[Any]:
        if self._problem:
            raise DnsTempError(self._problem)
        lifetime = self.timeout if timeout is None else max(0.1, min(timeout, self.timeout))
        if deadline:
            lifetime = min(lifetime, deadline - time.monotonic())
            if lifetime <= 0:
                raise DnsTempError(f"DNS {rdtype} {name}: time budget spent")
        try:
            answer = self._resolver.resolve(
                name, rdtype, lifetime=lifetime, search=False, raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsTempError(f"DNS {rdtype} {name}: {type(exc).__name__}") from exc
        except dns.exception.DNSException as exc:  # a bad name, a malformed answer
            log.info("DNS %s %s: %r", rdtype, name, exc)
            return []
        return list(answer)

    def txt(self, name: str, deadline: float = 0) -> list[bytes]:
        """Each TXT record of `name`, its strings joined (RFC 7208 section 3.3)."""
        return [b"".join(r.strings) for r in self.query(name, "TXT", deadline=deadline)]


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


class SenderVerifier:
    """`Arrival -> Verdict`: checks SPF (client IP, MAIL FROM or HELO), every DKIM
    signature (up to MAX_DKIM_SIGNATURES) and DMARC of the From domain (RFC 7489), and
    writes the results as our Authentication-Results header (RFC 8601), `authserv_id`
    being our SMTP hostname. Blocking (DNS): call it off the event loop."""

    def __init__(self, authserv_id: str, resolver: Resolver) -> None:
        self.authserv_id = authserv_id
        self._dns = resolver

    def __call__(self, arrival: Arrival) -> Verdict:
        deadline = time.monotonic() + LOOKUP_BUDGET * self._dns.timeout
        spf_check, spf_domain = self._spf(arrival, deadline)
        dkim_checks = self._dkim(arrival.raw, deadline)
        dmarc_check, policy = self._dmarc(arrival.raw, spf_check, spf_domain, dkim_checks, deadline)
        checks = [spf_check, *dkim_checks, dmarc_check]
        if dmarc_check.result == "fail" and policy in REFUSING_POLICIES:
            domain = dict(dmarc_check.properties).get("header.from", "")
            refusal = (
                f"550 5.7.1 The From domain {domain} fails DMARC (its policy is p={policy}): "
                "neither SPF nor DKIM authenticates it; forward as an attachment or from "
                "your own address"
            )
            log.info("refused %s from %s: dmarc=fail p=%s", domain, arrival.peer, policy)
            return Verdict(arrival.raw, checks, refusal)
        if dmarc_check.result == "temperror" and policy in REFUSING_POLICIES:
            # The domain asks to refuse what fails, and its aligned checks could not be
            # made: the sending server tries again later, when DNS answers.
            domain = dict(dmarc_check.properties).get("header.from", "")
            refusal = (
                f"451 4.7.0 DMARC of {domain} (p={policy}) could not be checked now: "
                "try again later"
            )
            return Verdict(arrival.raw, checks, refusal)
        header = (
            "Authentication-Results: "
            + f"{self.authserv_id};"
            + ";".join("\r\n\t" + check.render() for check in checks)
        )
        return Verdict(_with_results(arrival.raw, header, self.authserv_id), checks)

    # SPF (RFC 7208): MAIL FROM's domain, or HELO's for the null reverse-path.
    def _spf(self, arrival: Arrival, deadline: float) -> tuple[Check, str]:
        helo = arrival.helo.strip()
        sender = arrival.mail_from or (f"postmaster@{helo}" if helo else "")
        domain = sender.rpartition("@")[2].lower()
        identity = (
            ("smtp.mailfrom", arrival.mail_from) if arrival.mail_from else ("smtp.helo", helo)
        )
        if not domain:
            return Check("spf", "none", (identity,), "no MAIL FROM or HELO domain"), ""
        try:
            ipaddress.ip_address(arrival.peer)
        except ValueError:
            return Check("spf", "none", (identity,), "client address is not IP"), domain
        try:
            with _spf_through(self._dns, deadline):
                query = spf.query(
                    i=arrival.peer,
                    s=sender,
                    h=helo or domain,
                    timeout=self._dns.timeout,
                    querytime=4 * self._dns.timeout,
                )
                result, _code, explanation = query.check()
        except Exception as exc:  # pyspf on hostile input; never lose the mail over it
            log.info("SPF check failed: %r", exc)
            result, explanation = "temperror", type(exc).__name__
        comment = explanation if result in ("temperror", "permerror") else ""
        return Check("spf", str(result), (identity,), str(comment)), domain

    # DKIM (RFC 6376): each signature, its key looked up at selector._domainkey.domain.
    def _dkim(self, raw: bytes, deadline: float) -> list[Check]:
        try:
            count = sum(
                1 for name, _v in dkim.DKIM(raw).headers if name.lower() == b"dkim-signature"
            )
        except Exception as exc:  # unparseable headers
            return [
                Check("dkim", "permerror", (), f"cannot read the message: {type(exc).__name__}")
            ]
        if count == 0:
            return [Check("dkim", "none")]
        return [
            self._one_signature(raw, index, deadline)
            for index in range(min(count, MAX_DKIM_SIGNATURES))
        ]

    def _one_signature(self, raw: bytes, index: int, deadline: float) -> Check:
        verifier = dkim.DKIM(raw, minkey=1024, timeout=self._dns.timeout)
        missing_key: list[bytes] = []

        def txt(name: bytes, timeout: float = 5) -> bytes | None:
            records = self._dns.txt(name.decode("ascii", errors="replace").rstrip("."), deadline)
            if not records:
                missing_key.append(name)
            return records[0] if records else None

        comment = ""
        try:
            result = "pass" if verifier.verify(idx=index, dnsfunc=txt) else "fail"
        except DnsTempError as exc:
            result, comment = "temperror", str(exc)
        except dkim.ValidationError as exc:  # body hash mismatch, expired signature...
            result, comment = "fail", str(exc).split(" (")[0]
        except dkim.DKIMException as exc:  # malformed signature or key
            result, comment = "permerror", str(exc).split(" (")[0]
        except Exception as exc:  # dkimpy on hostile input
            result, comment = "permerror", type(exc).__name__
        if result == "fail" and missing_key:
            result, comment = "permerror", "no key published"
        fields = getattr(verifier, "signature_fields", {}) or {}
        props = tuple(
            (name, fields[tag].decode("ascii", errors="replace"))
            for name, tag in (("header.d", b"d"), ("header.s", b"s"))
            if tag in fields
        )
        return Check("dkim", result, props, comment)

    # DMARC (RFC 7489): the From domain's policy, and whether an aligned SPF or DKIM passed.
    def _dmarc(
        self,
        raw: bytes,
        spf_check: Check,
        spf_domain: str,
        dkim_checks: list[Check],
        deadline: float,
    ) -> tuple[Check, str]:
        sender, problem = strict_from(raw)
        if sender is None:
            why = problem or "no From address"
            return Check("dmarc", "permerror", (), why[:120]), ""
        from_domain = sender[1].rpartition("@")[2].lower().rstrip(".")
        props = (("header.from", from_domain),)
        # A lookup budget of its own: slow SPF or DKIM domains (the sender's choice) must not
        # spend the time of the From domain's policy, which is what decides.
        own_deadline = max(deadline, time.monotonic() + 2 * self._dns.timeout)
        try:
            record, org_record = self._dmarc_record(from_domain, own_deadline)
        except DnsTempError as exc:
            return Check("dmarc", "temperror", props, str(exc)), ""
        if record is None:
            return Check("dmarc", "none", props), ""
        policy = record.get("p", "none")
        if org_record and "sp" in record:
            policy = record["sp"]
        if policy not in ("none", "quarantine", "reject"):
            policy = "none"
        strict_spf = record.get("aspf") == "s"
        strict_dkim = record.get("adkim") == "s"
        aligned = spf_check.result == "pass" and _aligned(from_domain, spf_domain, strict_spf)
        for check in dkim_checks:
            d = dict(check.properties).get("header.d", "").lower()
            if check.result == "pass" and _aligned(from_domain, d, strict_dkim):
                aligned = True
        # Unchecked counts only for a domain that could have aligned: a MAIL FROM or DKIM d=
        # whose DNS never answers must not turn a fail into "temperror" (and a pass).
        unchecked = (
            spf_check.result == "temperror" and _aligned(from_domain, spf_domain, strict_spf)
        ) or any(
            check.result == "temperror"
            and _aligned(from_domain, dict(check.properties).get("header.d", ""), strict_dkim)
            for check in dkim_checks
        )
        if not aligned and unchecked:
            note = f"p={policy}, aligned SPF or DKIM unchecked"
            return Check("dmarc", "temperror", props, note), policy
        return Check("dmarc", "pass" if aligned else "fail", props, f"p={policy}"), policy

    def _dmarc_record(
        self, from_domain: str, deadline: float
    ) -> tuple[dict[str, str] | None, bool]:
        """The From domain's DMARC record, else its organizational domain's (True)."""
        record = self._one_dmarc_record(from_domain, deadline)
        if record is not None:
            return record, False
        org = _organizational_domain(from_domain)
        if org != from_domain:
            record = self._one_dmarc_record(org, deadline)
            if record is not None:
                return record, True
        return None, False

    def _one_dmarc_record(self, domain: str, deadline: float) -> dict[str, str] | None:
        texts = [
            t.decode("ascii", errors="replace")
            for t in self._dns.txt(f"_dmarc.{domain}", deadline)
            if t.strip().lower().startswith(b"v=dmarc1")
        ]
        if len(texts) != 1:  # none, or several: no policy (RFC 7489 section 6.6.3)
            return None
        tags: dict[str, str] = {}
        for part in texts[0].split(";"):
            name, sep, value = part.partition("=")
            if sep:
                tags.setdefault(name.strip().lower(), value.strip().lower())
        return tags


def make_sender_verifier(settings: Settings, authserv_id: str) -> SenderVerifier | None:
    """The SMTP door's check, as configured (None when CRM_SMTP_VERIFY_SENDERS is off)."""
    if not settings.smtp_verify_senders:
        return None
    resolver = Resolver(settings.dns_servers, settings.dns_timeout_seconds)
    return SenderVerifier(authserv_id, resolver)


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships


def _organizational_domain(domain: str) -> str:
    """RFC 7489 section 3.2: the public suffix plus one label (example.co.uk)."""
    return _public_suffixes().privatesuffix(domain) or domain


def _aligned(from_domain: str, other: str, strict: bool) -> bool:
    other = other.lower().rstrip(".")
    if not other:
        return False
    if strict:
        return other == from_domain
    return _organizational_domain(other) == _organizational_domain(from_domain)


_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]+")


def _value(text: str) -> str:
    """A property value: as is if a token or addr-spec, else a quoted-string."""
    text = "".join(ch for ch in text if ch.isprintable())[:254]
    if _TOKEN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    text = "".join(ch for ch in text if ch.isprintable())[:200]
    return re.sub(r"([()\\])", r"\\\1", text)


def without_our_results(raw: bytes, authserv_id: str) -> bytes:
    """`raw` without the Authentication-Results headers that claim our authserv-id (when
    the checks are off or could not run, none of ours may stand in the stored message)."""
    return _with_results(raw, "", authserv_id)


def _with_results(raw: bytes, header: str, authserv_id: str) -> bytes:
    """`raw` with `header` first and without the Authentication-Results headers that claim
    our authserv-id: only we write those (RFC 8601 section 5); others' are kept."""
    first_line_end = raw.find(b"\n")
    newline = (
        b"\n"
        if first_line_end > 0 and raw[first_line_end - 1 : first_line_end] != b"\r"
        else b"\r\n"
    )
    kept: list[bytes] = []
    lines = raw.splitlines(keepends=True)
    index = 0
    # A message starting with a folded line would continue our header: such lines go.
    while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
        index += 1
    while index < len(lines) and lines[index].strip(b"\r\n"):
        field_lines = [lines[index]]
        index += 1
        while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
            field_lines.append(lines[index])
            index += 1
        if not _claims_our_id(b"".join(field_lines), authserv_id):
            kept.extend(field_lines)
    body = b"".join(lines[index:])
    if not header:
        return b"".join(kept) + body
    ours = header.replace("\r\n", newline.decode()).encode("utf-8") + newline
    return ours + b"".join(kept) + body


def _claims_our_id(field: bytes, authserv_id: str) -> bool:
    name, sep, value = field.partition(b":")
    if not sep or name.strip().lower() != b"authentication-results":
        return False
    text = value.decode("utf-8", errors="replace").replace("\r", " ").replace("\n", " ")
    previous = None
    while previous != text:  # comments, also nested ones (CFWS)
        previous, text = text, re.sub(r"\([^()]*\)", " ", text)
    words = text.split(";", 1)[0].split()
    claimed = words[0].strip('"').lower() if words else ""
    return claimed == authserv_id.lower()


# The from-clause of a Received line (RFC 5321 section 4.4): "from HELO (NAME [ADDR])" as
# Postfix and Sendmail write it, "from NAME ([ADDR] helo=HELO)" as Exim does.
_RECEIVED_FROM = re.compile(r"^\s*from\s+(?P<helo>\S+)(?P<rest>.*?)(?:\sby\s|\swith\s|;|$)", re.I)
_BRACKETED_IP = re.compile(r"\[(?:IPv6:)?(?P<ip>[0-9A-Fa-f:.]+)\]", re.I)
_EXIM_HELO = re.compile(r"\bhelo=(?P<helo>[^\s()]+)", re.I)


def received_client(raw: bytes) -> tuple[str, str] | None:
    """The client address and HELO named by the message's topmost Received line (the one a
    relay in front of us wrote for its own client), or None without a usable one."""
    lines = raw.split(b"\n")
    field: list[bytes] = []
    for index, line in enumerate(lines):
        line = line.rstrip(b"\r")
        if not line:
            break  # end of the header
        if line[:9].lower() != b"received:":
            continue
        field = [line[9:]]
        for more in lines[index + 1 :]:
            if more[:1] not in (b" ", b"\t"):
                break
            field.append(more.rstrip(b"\r"))
        break
    if not field:
        return None
    text = " ".join(b" ".join(field).decode("utf-8", errors="replace").split())
    match = _RECEIVED_FROM.match(text)
    if match is None:
        return None
    rest = match.group("rest")
    address = _BRACKETED_IP.search(rest)
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address.group("ip"))
    except ValueError:
        return None
    exim_helo = _EXIM_HELO.search(rest)
    helo = exim_helo.group("helo") if exim_helo else match.group("helo")
    return str(ip), helo
