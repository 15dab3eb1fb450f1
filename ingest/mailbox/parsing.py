"""Raw message bytes -> ParsedEmail; the only module that imports mail-parser.

Everything downstream (forward detection, processing) reads ParsedEmail, never the library.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parseaddr

import mailparser

from ingest.errors import RejectedInput

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


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse `raw`; a message the parser cannot read at all is the sender's fault."""
    try:
        parsed = mailparser.parse_from_bytes(raw)
        message = parsed.message
        headers = {str(k).lower(): str(v) for k, v in message.items()}
        text_plain = "\n".join(parsed.text_plain).replace("\r\n", "\n")
        text_html = "\n".join(parsed.text_html)
        return ParsedEmail(
            message_id=(parsed.message_id or "").strip(),
            sender=_first(parsed.from_),
            to=_addresses(parsed.to),
            cc=_addresses(parsed.cc),
            date=_utc(parsed.date),
            subject=(parsed.subject or "").strip(),
            text=text_plain or html_to_text(text_html),
            html=text_html,
            headers=headers,
            content_type=message.get_content_type(),
        )
    except Exception as exc:  # the library raises many kinds on hostile input
        log.info("unparseable message: %r", exc)
        raise RejectedInput(f"cannot parse the message ({type(exc).__name__})") from exc


def _addresses(values: list[tuple[str, str]] | None) -> list[Address]:
    result: list[Address] = []
    for name, address in values or []:
        if address and "@" in address:
            result.append((name.strip(), address.strip()))
        elif name and "@" in name:
            # Some clients put the address alone in the display-name slot.
            _n, addr = parseaddr(name)
            if addr:
                result.append(("", addr))
    return result


def _first(values: list[tuple[str, str]] | None) -> Address | None:
    found = _addresses(values)
    return found[0] if found else None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_TAG = re.compile(r"<[^>]+>")
_BLOCK = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h[1-6])\b[^>]*>", re.IGNORECASE)
_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def html_to_text(markup: str) -> str:
    """Readable text of an HTML-only mail (line breaks kept, tags and scripts dropped)."""
    if not markup:
        return ""
    text = _HIDDEN.sub("", markup)
    text = _BLOCK.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
