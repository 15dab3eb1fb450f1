"""DKIM (RFC 6376) at the SMTP door, one of the sender checks `sender_auth` runs: each
signature, its key looked up at selector._domainkey.domain. The only dkimpy import.
"""

from __future__ import annotations

import dkim

from ingest.mailbox.auth_results import Check
from ingest.mailbox.sender_dns import DnsTempError, Resolver

MAX_DKIM_SIGNATURES = 5  # more are not checked (each costs a DNS lookup)


def check_dkim(resolver: Resolver, raw: bytes, deadline: float) -> list[Check]:
    """Each DKIM signature's result (up to MAX_DKIM_SIGNATURES), or one "none" without any."""
    try:
        count = sum(1 for name, _v in dkim.DKIM(raw).headers if name.lower() == b"dkim-signature")
    except Exception as exc:  # unparseable headers
        return [Check("dkim", "permerror", (), f"cannot read the message: {type(exc).__name__}")]
    if count == 0:
        return [Check("dkim", "none")]
    return [
        _check_signature(resolver, raw, index, deadline)
        for index in range(min(count, MAX_DKIM_SIGNATURES))
    ]


def _check_signature(resolver: Resolver, raw: bytes, index: int, deadline: float) -> Check:
    verifier = dkim.DKIM(raw, minkey=1024, timeout=resolver.timeout)
    missing_key: list[bytes] = []

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        records = resolver.txt(name.decode("ascii", errors="replace").rstrip("."), deadline)
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
