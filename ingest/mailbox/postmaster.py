"""Mail to postmaster (RFC 5321 section 4.5.1): the SMTP door accepts it, processing leaves
it for the administrators (unmatched, with who sent it and about what), never on a card.
"""

from __future__ import annotations

import contextlib
from email.header import decode_header, make_header

from ingest.mailbox.loop_guard import header_fields

LOCAL_PART = "postmaster"
# Anyone may write to postmaster, so what it keeps is small and counted: a mail to it is at
# most this big (552 beyond), and each one counts, for its client, as an unknown address
# does (the door's CRM_SMTP_UNKNOWN_RCPT_LIMIT per window): a stranger cannot fill the disk.
MAX_BYTES = 1024 * 1024
TOO_BIG = f"552 5.3.4 Mail to postmaster is at most {MAX_BYTES} bytes"
_SHOWN_CHARACTERS = 200  # of the From and Subject in the reason


def postmaster_address(address: str, domain: str) -> str | None:
    """`postmaster@domain` when `address` is postmaster, bare or at `domain` (the local part
    in any case: RFC 5321 makes "postmaster" case-insensitive), else None."""
    local, at, host = address.strip().rpartition("@")
    if not at:
        local, host = host, domain
    if local.lower() != LOCAL_PART or host.lower() != domain.lower():
        return None
    return f"{LOCAL_PART}@{domain.lower()}"


def is_postmaster(recipient: str) -> bool:
    """`recipient` as the door stores it is postmaster's (archive addresses are tokens)."""
    return recipient.rpartition("@")[0].lower() == LOCAL_PART


def reason(raw: bytes) -> str:
    """What the administrators read in the unmatched list: who wrote and about what (the
    message's own headers, decoded, cut short, without control characters)."""
    fields = dict(reversed(header_fields(raw)))  # the first of a repeated header wins
    sender = _shown(fields.get("from", ""))
    subject = _shown(fields.get("subject", ""))
    return (
        "mail to postmaster: kept for the administrators, on no card "
        f"(From: {sender or 'none'}; Subject: {subject or 'none'})"
    )


def _shown(value: str) -> str:
    # An unknown charset or a broken encoded word: shown as written.
    with contextlib.suppress(LookupError, UnicodeError, ValueError):
        value = str(make_header(decode_header(value)))
    printable = "".join(c if c.isprintable() else " " for c in value)
    text = " ".join(printable.split())
    return text if len(text) <= _SHOWN_CHARACTERS else text[: _SHOWN_CHARACTERS - 1] + "…"
