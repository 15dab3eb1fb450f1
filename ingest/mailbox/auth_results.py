"""Our Authentication-Results header (RFC 8601) at the SMTP door: one method's result
(`Check`), written first in the stored message; ones claiming our name from elsewhere removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


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
    return with_results(raw, "", authserv_id)


def with_results(raw: bytes, header: str, authserv_id: str) -> bytes:
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
