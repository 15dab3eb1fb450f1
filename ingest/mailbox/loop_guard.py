"""Mail-loop signs, for the SMTP door (our trace line) and processing (the loop guard).

Pure functions over raw bytes and the mail to record; the counting is `processing.recent_copies`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from email.utils import format_datetime

from crm_core import email_cases

TRACE_PRODUCT = "crm-ingest"  # the comment after our name in our Received lines


def trace_line(
    domain: str, helo: str, peer: str, protocol: str, now: datetime, newline: bytes = b"\r\n"
) -> bytes:
    """Our Received line for a mail taken at the door (RFC 5321 section 4.4; `protocol` as
    in RFC 3848: SMTP, ESMTP, ESMTPS...). The HELO name is the client's own words: only
    the characters of a domain or address literal are kept, at most 255."""
    name = re.sub(r"[^A-Za-z0-9.:\[\]_-]", "", helo)[:255] or "unknown"
    literal = f"[IPv6:{peer}]" if ":" in peer else f"[{peer}]"
    return (
        f"Received: from {name} ({literal}){newline.decode()}"
        f"\tby {domain} ({TRACE_PRODUCT}) with {protocol};{newline.decode()}"
        f"\t{format_datetime(now)}{newline.decode()}"
    ).encode("ascii")


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """The header fields of `raw` in order, as (lower-case name, unfolded value)."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", errors="replace")
    fields: list[tuple[str, str]] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t"):
            if fields:
                fields[-1] = (fields[-1][0], f"{fields[-1][1]} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if sep:
            fields.append((name.strip().lower(), value.strip()))
    return fields


def is_our_trace(value: str, domain: str) -> bool:
    """A Received value written by our door for `domain` (see `trace_line`)."""
    pattern = rf"\bby\s+{re.escape(domain)}\s+\({re.escape(TRACE_PRODUCT)}\)"
    return bool(domain) and re.search(pattern, value, re.IGNORECASE) is not None


def names_domain(value: str, domain: str) -> bool:
    """`value` (an X-Loop header) names `domain` or an address at it, not a subdomain."""
    pattern = rf"(?<![\w.-]){re.escape(domain)}(?![\w.-])"
    return bool(domain) and re.search(pattern, value, re.IGNORECASE) is not None


def message_id_hash(message_id: str) -> str | None:
    """What the loop guard compares of a Message-ID (None when the mail has none)."""
    message_id = message_id.strip()
    return hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest() if message_id else None


# Reply, forward and auto-reply prefixes, in any language: up to three words and a colon
# ("Re:", "AW:", "Re[2]:", "Automatic reply:", "Réponse automatique :"; the fullwidth colon
# too), repeated.
_PREFIXES = re.compile(
    r"^\s*(?:\[[^\]]{0,40}\]\s*)?"
    r"(?:[^\W\d_]+(?:[ \t][^\W\d_]+){0,2}\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a]\s*)+"
)


def content_digest(mail: email_cases.EmailRecord) -> str:
    """What makes two mails "the same message" when their Message-IDs differ: an
    autoresponder ping-pong writes a new Message-ID (and Date, and one more "Re:") each
    round but repeats the rest. So: the sender, the subject without its prefixes, the text
    and the note with whitespace runs as one space, the files' contents, and for a forward
    the original's date (two short "Thanks!" mails of one customer forwarded are two mails).
    """
    parts = [
        "v1",
        mail.sender.address.strip().lower(),
        " ".join(_PREFIXES.sub("", mail.subject).split()),
        " ".join(mail.note.split()),
        " ".join(mail.text.split()),
        str(mail.occurred_at.timestamp()) if mail.forwarded else "",
        *sorted(hashlib.sha256(file.content).hexdigest() for file in mail.attachments),
    ]
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()


def report_digest(sender: str, subject: str, text: str) -> str:
    """`content_digest` for a delivery report (no forward, no files): the same report sent
    again and again under new Message-IDs is the same message."""
    parts = [
        "report-v1",
        sender.strip().lower(),
        " ".join(_PREFIXES.sub("", subject).split()),
        " ".join(text.split()),
    ]
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()
