"""Raw message bytes -> ParsedEmail; the only module that imports mail-parser.

Everything downstream (forward detection, processing) reads ParsedEmail, never the library.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr

import mailparser

from ingest.errors import RejectedInput
from ingest.mailbox.html_text import html_to_text

log = logging.getLogger(__name__)

Address = tuple[str, str]  # (display name, address)


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str
    sender: Address | None
    to: list[Address]
    cc: list[Address]
    date: datetime | None
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = ""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


MAX_TEXT_CHARS = 1_000_000  # longer bodies are cut (the raw message keeps everything)


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse `raw`; a message the parser cannot read at all is the sender's fault."""
    try:
        parsed = mailparser.parse_from_bytes(_utf8_header_block(raw))
        message = parsed.message
        headers = {str(k).lower(): _clean(str(v)) for k, v in message.items()}
        text_plain = "\n".join(parsed.text_plain).replace("\r\n", "\n")
        text_html = "\n".join(parsed.text_html)
        return ParsedEmail(
            message_id=_clean(parsed.message_id or "").strip(),
            sender=_first(parsed.from_),
            to=_addresses(parsed.to),
            cc=_addresses(parsed.cc),
            date=_utc(parsed.date),
            subject=_clean(parsed.subject or "").strip(),
            text=_clean(text_plain or html_to_text(text_html))[:MAX_TEXT_CHARS],
            html=_clean(text_html),
            headers=headers,
            content_type=message.get_content_type(),
        )
    except Exception as exc:  # the library raises many kinds on hostile input
        log.info("unparseable message: %r", exc)
        raise RejectedInput(f"cannot parse the message ({type(exc).__name__})") from exc


def _utf8_header_block(raw: bytes) -> bytes:
    """Raw 8-bit headers that are not UTF-8 are read as Windows-1252 (what old clients
    send, RFC 6532 aside), so "café" does not become "caf" or lone surrogates."""
    cut = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=-1)
    head = raw if cut < 0 else raw[:cut]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return head.decode("cp1252", errors="replace").encode("utf-8") + raw[len(head) :]
    return raw


def _clean(text: str) -> str:
    """No NUL (PostgreSQL text refuses it) and no lone surrogates (not encodable)."""
    return text.replace("\x00", "").encode("utf-8", errors="replace").decode("utf-8")


def _addresses(values: list[tuple[str, str]] | None) -> list[Address]:
    result: list[Address] = []
    for name, address in values or []:
        if address and "@" in address:
            result.append((_clean(name).strip(), _clean(address).strip()))
        elif name and "@" in name:
            # Some clients put the address alone in the display-name slot.
            _n, addr = parseaddr(name)
            if addr:
                result.append(("", _clean(addr)))
    return result


def _first(values: list[tuple[str, str]] | None) -> Address | None:
    found = _addresses(values)
    return found[0] if found else None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
