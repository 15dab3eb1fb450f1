"""DMARC (RFC 7489) at the SMTP door, the sender check `sender_auth` decides by: the From
domain's policy, and whether an SPF or DKIM result aligned with it passed.
"""

from __future__ import annotations

import time
from functools import cache

from publicsuffixlist import PublicSuffixList

from ingest.mailbox.auth_results import Check
from ingest.mailbox.parsing import strict_from
from ingest.mailbox.sender_dns import DnsTempError, Resolver


def check_dmarc(
    resolver: Resolver,
    raw: bytes,
    spf_check: Check,
    spf_domain: str,
    dkim_checks: list[Check],
    deadline: float,
) -> tuple[Check, str]:
    """DMARC of the From domain: its policy ("" without one), and whether an SPF or DKIM
    check aligned with it passed."""
    sender, problem = strict_from(raw)
    if sender is None:
        why = problem or "no From address"
        return Check("dmarc", "permerror", (), why[:120]), ""
    from_domain = sender[1].rpartition("@")[2].lower().rstrip(".")
    props = (("header.from", from_domain),)
    # A lookup budget of its own: slow SPF or DKIM domains (the sender's choice) must not
    # spend the time of the From domain's policy, which is what decides.
    own_deadline = max(deadline, time.monotonic() + 2 * resolver.timeout)
    try:
        record, org_record = _dmarc_record(resolver, from_domain, own_deadline)
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
    resolver: Resolver, from_domain: str, deadline: float
) -> tuple[dict[str, str] | None, bool]:
    """The From domain's DMARC record, else its organizational domain's (True)."""
    record = _one_dmarc_record(resolver, from_domain, deadline)
    if record is not None:
        return record, False
    org = _organizational_domain(from_domain)
    if org != from_domain:
        record = _one_dmarc_record(resolver, org, deadline)
        if record is not None:
            return record, True
    return None, False


def _one_dmarc_record(resolver: Resolver, domain: str, deadline: float) -> dict[str, str] | None:
    texts = [
        t.decode("ascii", errors="replace")
        for t in resolver.txt(f"_dmarc.{domain}", deadline)
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
