"""Raw message bytes -> ParsedEmail; the only module that imports mail-parser.

Everything downstream (forward detection, processing) reads ParsedEmail, never the library.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import errors, policy
from email.headerregistry import AddressHeader, BaseHeader
from email.message import Message
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value, parseaddr

import mailparser

from ingest.errors import RejectedInput
from ingest.mailbox.html_text import html_to_text

log = logging.getLogger(__name__)

Address = tuple[str, str]  # (display name, address)


@dataclass(frozen=True)
class Attachment:
    file_name: str
    media_type: str
    content: bytes
    # An image the HTML shows (cid:), kept with the message but not a document of the card.
    inline: bool = False


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
    attachments: list[Attachment] = field(default_factory=list)
    # Messages attached whole (message/rfc822): a forward "as attachment".
    attached_messages: list[bytes] = field(default_factory=list)
    # Why the From header cannot be trusted (see `strict_from`); "" when it can.
    from_problem: str = ""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


MAX_TEXT_CHARS = 1_000_000  # longer bodies are cut (the raw message keeps everything)


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse `raw`; a message the parser cannot read at all is the sender's fault."""
    try:
        parsed = mailparser.parse_from_bytes(_utf8_header_block(raw))
        message = parsed.message
        headers: dict[str, str] = {}
        for name, value in message.items():  # a repeated header: the first one wins
            headers.setdefault(str(name).lower(), _clean(str(value)))
        parts = _Parts()
        parts.collect(message)
        if parts.attached_messages or parts.flowed:
            # mail-parser flattens attached messages into the text, and leaves flowed text
            # (RFC 3676) unjoined: keep only our own parts, decoded (and unflowed) here.
            text_plain, text_html = "\n".join(parts.texts), "\n".join(parts.htmls)
        else:
            text_plain = "\n".join(parsed.text_plain)
            text_html = "\n".join(parsed.text_html)
        text_plain = text_plain.replace("\r\n", "\n")
        referenced = set(re.findall(r"cid:([^\"'>\s)]+)", text_html, re.IGNORECASE))
        sender, from_problem = strict_from(raw)
        return ParsedEmail(
            message_id=_first(parsed.message_id),
            sender=sender if sender or from_problem else _first_address(parsed.from_),
            to=_addresses(parsed.to),
            cc=_addresses(parsed.cc),
            date=_utc(parsed.date),
            subject=_first(parsed.subject),
            text=_clean(text_plain or html_to_text(text_html))[:MAX_TEXT_CHARS],
            html=_clean(text_html),
            headers=headers,
            content_type=message.get_content_type(),
            attachments=[
                Attachment(a.file_name, a.media_type, a.content, inline=a.content_id in referenced)
                for a in parts.attachments
            ],
            attached_messages=parts.attached_messages,
            from_problem=from_problem,
        )
    except Exception as exc:  # the library raises many kinds on hostile input
        log.info("unparseable message: %r", exc)
        raise RejectedInput(f"cannot parse the message ({type(exc).__name__})") from exc


MAX_ADDRESS_LENGTH = 254  # RFC 5321's path limit less the angle brackets


def strict_from(raw: bytes) -> tuple[Address | None, str]:
    """The one author of `raw` by RFC 5322's grammar, or why there is not exactly one.

    Returns (address, "") or (None, reason); (None, "") when there is no From header.
    Python 3.11.7 has no `getaddresses(strict=True)` (3.11.10+), whose lenient parsing reads
    `a@x(<b@y>` as two addresses (CVE-2023-27043); `email.policy.default`'s header registry
    parses by the grammar and reports what it had to repair as defects, which we refuse.
    Obsolete syntax (`John Q. Public`) and UTF-8 local parts (RFC 6532) are allowed.
    """
    head = _utf8_header_block(raw)
    cut = min((i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0), default=-1)
    text = (head if cut < 0 else head[:cut]).decode("utf-8", errors="replace")
    values = HeaderParser(policy=policy.compat32).parsestr(text + "\n\n").get_all("From") or []
    if not values:
        return None, ""
    if len(values) > 1:
        return None, f"the message has {len(values)} From headers; exactly one is required"
    value = re.sub(r"\r?\n[ \t]", " ", str(values[0])).strip()
    shown = _clean(value)[:200]
    try:
        header = policy.default.header_factory("From", value)
    except Exception:  # the parser itself breaks on some inputs (g:;(x@y) on 3.11)
        return None, f"the From header cannot be read: {shown!r}"
    if not (isinstance(header, AddressHeader) and isinstance(header, BaseHeader)):
        return None, f"the From header cannot be read: {shown!r}"  # not the registry's type
    bad = [
        d
        for d in header.defects
        if isinstance(d, errors.InvalidHeaderDefect | errors.HeaderMissingRequiredValue)
    ]
    addresses = header.addresses
    if bad:
        return None, f"the From header is malformed ({bad[0]}): {shown!r}"
    if len(addresses) != 1:
        if not addresses:
            return None, ""
        return None, f"the From header has {len(addresses)} addresses; exactly one is required"
    address = addresses[0]
    if not address.username or not address.domain:
        return None, f"the From address is incomplete: {shown!r}"
    if len(address.addr_spec) > MAX_ADDRESS_LENGTH:
        return None, f"the From address is longer than {MAX_ADDRESS_LENGTH} characters"
    return (_clean(address.display_name).strip(), _clean(address.addr_spec)), ""


@dataclass
class _Found:
    file_name: str
    media_type: str
    content: bytes
    content_id: str


class _Parts:
    """Walks the MIME tree: body texts, attachments, and attached messages (not entered:
    what is inside a forwarded message belongs to that message)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.htmls: list[str] = []
        self.attachments: list[_Found] = []
        self.attached_messages: list[bytes] = []
        self.flowed = False  # a text/plain part was format=flowed (and is unflowed here)

    def collect(self, part: Message) -> None:
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                self.attached_messages.append(inner[0].as_bytes())
            return
        if part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    self.collect(sub)
            return
        media_type = part.get_content_type()
        file_name = _clean(part.get_filename() or "")
        disposition = part.get_content_disposition()
        if (
            media_type in ("text/plain", "text/html")
            and not file_name
            and disposition != "attachment"
        ):
            text = _decoded_text(part)
            if media_type == "text/html":
                self.htmls.append(text)
                return
            if _param(part, "format") == "flowed":
                self.flowed = True
                text = unflow(text, delsp=_param(part, "delsp") == "yes")
            self.texts.append(text)
            return
        content = _payload_bytes(part)
        content_id = (part.get("Content-ID") or "").strip().strip("<>")
        self.attachments.append(
            _Found(file_name or content_id or "attachment", media_type, content, content_id)
        )


def unflow(text: str, delsp: bool = False) -> str:
    """The text of a `format=flowed` part (RFC 3676) with its soft line breaks joined.

    Each line is read as section 4.2 says: its quote marks (">") are counted and removed
    first (section 4.5), then one space-stuffing space (section 4.4); a line that then ends
    in a space is flowed and continues on the next one, except the signature separator
    "-- ", which is neither flowed nor fixed (section 4.3) and always stands on its own.
    With DelSp=yes the trailing space of a flowed line is deleted (section 4.2). A flowed
    line joins only a line of the same quote depth: a change of depth ends the paragraph
    ("quote-depth-wins", section 4.5). Quoted lines come out as ">" x depth, a space, text.
    """
    lines: list[str] = []
    joined: str | None = None  # the paragraph so far, while its last line was flowed
    joined_depth = 0
    for line in text.replace("\r\n", "\n").split("\n"):
        content = line.lstrip(">")
        depth = len(line) - len(content)
        if content.startswith(" "):
            content = content[1:]
        separator = content == "-- "
        if joined is not None and (depth != joined_depth or separator):
            lines.append(_quoted(joined_depth, joined))  # the paragraph ends unjoined
            joined = None
        if joined is not None:
            content = joined + content
        if content.endswith(" ") and not separator:
            joined, joined_depth = (content[:-1] if delsp else content), depth
        else:
            lines.append(_quoted(depth, content))
            joined = None
    if joined is not None:  # a flowed last line: nothing follows to join
        lines.append(_quoted(joined_depth, joined))
    return "\n".join(lines)


def _quoted(depth: int, content: str) -> str:
    if not depth:
        return content
    return ">" * depth + (" " + content if content else "")


def _param(part: Message, name: str) -> str:
    """A Content-Type parameter, lower-case ("" when absent); RFC 2231 values collapsed."""
    value = part.get_param(name)
    if isinstance(value, tuple):
        value = collapse_rfc2231_value(value)
    return str(value or "").strip().lower()


def _payload_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _decoded_text(part: Message) -> str:
    payload = _payload_bytes(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("cp1252", errors="replace")


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


def _first(value: object) -> str:
    """A header that may appear once (RFC 5322 section 3.6), as mail-parser gives it: a str,
    or a list of every value when the sender repeated it (two Subject, Message-ID, In-Reply-To
    headers...). The first one wins, as for Date, From, To and Cc, which it reads that way."""
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return _clean(str(value or "")).strip()


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


def _first_address(values: list[tuple[str, str]] | None) -> Address | None:
    found = _addresses(values)
    return found[0] if found else None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
