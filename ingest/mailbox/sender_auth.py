"""Sender trust at the SMTP door, in a thread before the mail is stored (the handler's
`verify`): SPF, DKIM and DMARC (`spf_check`, `dkim_check`, `dmarc_check`) through one resolver
(`sender_dns`), written as our Authentication-Results (`auth_results`) or a refusal.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ingest.mailbox.auth_results import Check, with_results
from ingest.mailbox.dkim_check import check_dkim
from ingest.mailbox.dmarc_check import check_dmarc
from ingest.mailbox.sender_dns import Resolver
from ingest.mailbox.spf_check import check_spf
from ingest.settings import Settings

log = logging.getLogger(__name__)

# All lookups of one message together take at most this many timeouts: a DNS server that
# does not answer delays a mail by about 3 x CRM_DNS_TIMEOUT_SECONDS, then it is temperror.
LOOKUP_BUDGET = 3
# DMARC policies under which a failing From is refused at the door (RFC 7489 section 6.3).
# We have no quarantine folder: the archive is the user's record, so "quarantine" is refused
# as well. p=none asks receivers not to act: such mail is accepted, the failure recorded.
REFUSING_POLICIES = ("reject", "quarantine")


@dataclass(frozen=True)
class Arrival:
    """What the SMTP session knows of a message: the bytes as received and the envelope."""

    raw: bytes
    peer: str  # the client's IP address
    helo: str
    mail_from: str  # "" for the null reverse-path


@dataclass(frozen=True)
class Verdict:
    """The message to store (our Authentication-Results first) or the SMTP refusal."""

    raw: bytes
    checks: list[Check] = field(default_factory=list)
    refusal: str = ""

    def result(self, method: str) -> str:
        return next((c.result for c in self.checks if c.method == method), "")


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
        spf_check, spf_domain = check_spf(
            self._dns, arrival.peer, arrival.helo, arrival.mail_from, deadline
        )
        dkim_checks = check_dkim(self._dns, arrival.raw, deadline)
        dmarc_check, policy = check_dmarc(
            self._dns, arrival.raw, spf_check, spf_domain, dkim_checks, deadline
        )
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
        return Verdict(with_results(arrival.raw, header, self.authserv_id), checks)


def make_sender_verifier(settings: Settings, authserv_id: str) -> SenderVerifier | None:
    """The SMTP door's check, as configured (None when CRM_SMTP_VERIFY_SENDERS is off)."""
    if not settings.smtp_verify_senders:
        return None
    resolver = Resolver(settings.dns_servers, settings.dns_timeout_seconds)
    return SenderVerifier(authserv_id, resolver)
