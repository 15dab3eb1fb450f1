"""Reading a forwarded header block, for `forwarding`: its lines ("label: value" fields, one
per line or run together on one line) and the separator lines above it.
"""

# ruff: noqa: RUF001 (the punctuation of the languages users write in: en dash, fullwidth colon)
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from ingest.mailbox.dates import looks_like_date
from ingest.mailbox.forward_hints import (
    FORWARD_PHRASES,
    FORWARD_PREFIXES,
    LABEL_FIELD,
    REPLY_PREFIXES,
)

MAX_FIELDS = 8  # a block has 2 to 8 fields: one holds the sender's address, one a date


# Invisible format characters clients put before markers (BOM, zero-width, bidi marks).
_INVISIBLE = re.compile("[\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_FIELD = re.compile(
    r"^\s*[*_]*(?P<label>[^\W\d_][^:：<>@\[\]\t\"\d]{0,31}?)[*_]*\s*[:：][*_]*(?P<value>.*)$"
)
# A separator line: words between dashes ("-------- Videresendt melding --------"), a rule
# ("________"), or a known phrase; anything after it on the line is the header block.
_DASHED = re.compile(r"^\s*[-_=–—]{2,}(?P<words>[^-_=–—]{0,80}?)[-_=–—]{2,}\s*(?P<rest>.*)$")
_PHRASE = re.compile(
    r"^[\s*_\-–—=]*(?:" + "|".join(re.escape(p) for p in FORWARD_PHRASES) + r")[\s:*_\-–—=]*",
    re.IGNORECASE,
)
EMAIL = re.compile(r"[\w.+\-'=/!#$%&*?^`{|}~]+@[\w\-]+(?:\.[\w\-]+)+")


def normalise(text: str) -> str:
    return _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def unquote(line: str) -> str:
    return re.sub(r"^\s*(?:>\s?)+", "", line)


@dataclass
class Field:
    label: str
    value: str

    @property
    def hint(self) -> str | None:
        return LABEL_FIELD.get(self.label.lower())


def read_field(line: str) -> Field | None:
    """A "label: value" line; a label is one to four words, not a URL or a prefix."""
    match = _FIELD.match(line)
    if not match:
        return None
    label = " ".join(match.group("label").split()).strip("*_ ")
    words = label.split()
    if not words or len(words) > 4 or label.lower() in ("http", "https", "mailto"):
        return None
    value = match.group("value").strip().strip("*_").strip()
    return Field(label, value)


def separator_rest(line: str) -> str | None:
    """The rest of a separator line (may be ""), or None if it is not one."""
    dashed = _DASHED.match(line)
    if dashed:
        return dashed.group("rest")
    phrase = _PHRASE.match(line)
    if phrase and len(line.strip()) < 80:
        return line[phrase.end() :]
    return None


class LinesFrom(Sequence[str]):
    """`lines[start:]`, after `head` when one is given, without copying them: a forward is
    looked for at every line of a mail, and a copy of the rest at each made that quadratic.
    Slices to the end are views too; other slices are lists."""

    def __init__(self, lines: list[str], start: int = 0, head: str | None = None) -> None:
        self._lines = lines
        self._start = min(max(start, 0), len(lines))
        self._head = head

    def __len__(self) -> int:
        return len(self._lines) - self._start + (self._head is not None)

    def __iter__(self) -> Iterator[str]:
        if self._head is not None:
            yield self._head
        lines = self._lines
        for index in range(self._start, len(lines)):
            yield lines[index]

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            if index.step is None and index.stop is None and (index.start or 0) >= 0:
                return self.after(index.start or 0)
            return [self[k] for k in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self._head is not None:
            if index == 0:
                return self._head
            index -= 1
        return self._lines[self._start + index]

    def after(self, count: int, head: str | None = None) -> LinesFrom:
        """The lines after the first `count`, after `head` when one is given."""
        if self._head is None:
            return LinesFrom(self._lines, self._start + count, head)
        if count == 0:
            if head is not None:
                raise ValueError("a view of lines has one head at most")
            return self
        return LinesFrom(self._lines, self._start + count - 1, head)


def read_fields(lines: Sequence[str]) -> tuple[list[Field], int]:
    fields: list[Field] = []
    index = 0
    while index < len(lines) and len(fields) < MAX_FIELDS:
        line = lines[index]
        if not line.strip():
            ahead = index + 1
            while ahead < len(lines) and ahead <= index + 2 and not lines[ahead].strip():
                ahead += 1
            if not _is_complete(fields) and ahead < len(lines) and read_field(lines[ahead]):
                index = ahead  # a blank line inside a block not yet complete (HTML spacing)
                continue
            break
        found = read_field(line)
        if found is None:
            if fields and "@" in fields[-1].value and EMAIL.search(line) and len(line) < 200:
                fields[-1].value += " " + line.strip()  # a recipient list wrapped
                index += 1
                continue
            break
        if _body_line_under_subject(fields, found, lines[index + 1 : index + 2]):
            break
        fields.append(found)
        index += 1
    return fields, index


def _body_line_under_subject(fields: list[Field], found: Field, after: Sequence[str]) -> bool:
    """The body's first line ("Note: …") right under a block that ends with its subject
    (Outlook), and not a further header field: no known label, address or date, and no
    field line after it."""
    if not fields or fields[-1].hint != "subject" or found.hint is not None:
        return False
    if EMAIL.search(found.value) or looks_like_date(found.value):
        return False
    return not (after and read_field(after[0]) is not None)


def _is_complete(fields: list[Field]) -> bool:
    return any(EMAIL.search(f.value) for f in fields) and any(
        looks_like_date(f.value) for f in fields
    )


# One word and a colon inside a line, after a space, ">", a quote or a digit ("UTC+1Objet :").
_INLINE = re.compile(r"(?:^|(?<=[\s>\"'»)\]\d;,]))(?P<label>[^\W\d_]+)\s?[:：](?=\s|$)")
# A label glued to the end of the previous value ("…09:26:50 CETSubiect:"): its capital.
_GLUED = re.compile(r"(?<=[^\W\d_])(?=[^\W\d_a-z][^\W\d_A-Z]+$)")


@dataclass(frozen=True)
class _Cut:
    start: int  # where the label starts
    end: int  # where its value starts (after the colon)
    label: str


def inline_labels(line: str) -> list[_Cut]:
    """Labels run together on one line after the first field: capitalised (or in a script
    without case), or known; never a subject prefix ("Re:")."""
    first = _FIELD.match(line)
    found = []
    for match in _INLINE.finditer(line):
        start, label = match.start(), match.group("label")
        if first is not None and start < first.start("value"):
            continue
        glued = [m.start() for m in _GLUED.finditer(label)]
        if glued and label.lower() not in LABEL_FIELD:
            start, label = start + glued[-1], label[glued[-1] :]
        lower = label.lower()
        if lower in FORWARD_PREFIXES or lower in REPLY_PREFIXES:
            continue
        if lower in LABEL_FIELD or not label[0].islower():
            found.append(_Cut(start, match.end(), label))
    return found


def one_line_fields(line: str, forms: set[str]) -> tuple[list[Field], str]:
    """Split a one-line block into fields; the outer subject, found in it, is its own field
    even when its label has no colon. Returns the fields and any text after the subject."""
    first = _FIELD.match(line)
    assert first is not None
    span = _subject_span(line, forms)
    cuts = [_Cut(0, first.start("value"), first.group("label").strip(" *_"))]
    cuts += [c for c in inline_labels(line) if span is None or not span[0] <= c.start < span[1]]
    fields: list[Field] = []
    after = ""
    for number, cut in enumerate(cuts):
        last = number + 1 == len(cuts)
        end = len(line) if last else cuts[number + 1].start
        label, value = cut.label, line[cut.end : end]
        if span is None or not cut.end <= span[0] < end:
            fields.append(Field(label, value.strip().strip(";,")))
            continue
        head, subject_value = line[cut.end : span[0]], line[span[0] : span[1]]
        if head.strip():  # "… 09:31 Assunto Integer…": the subject's label has no colon
            words = head.rstrip().rsplit(None, 1)
            fields.append(Field(label, words[0].strip() if len(words) > 1 else ""))
            label = words[-1]
        fields.append(Field(label, subject_value.strip()))
        after = line[span[1] :] if last else ""
    return fields, after


def _subject_span(line: str, forms: set[str]) -> tuple[int, int] | None:
    folded = line.casefold()
    for form in sorted(forms, key=len, reverse=True):
        at = folded.rfind(form)
        if at > 0 and len(form) >= 3:
            return at, at + len(form)
    return None


def split_block(lines: LinesFrom, forms: set[str]) -> tuple[list[Field], LinesFrom] | None:
    """The header block at the top of `lines` as fields, and the lines under it (the body);
    None when `lines` does not start with a field."""
    if not lines:
        return None
    first = read_field(lines[0])
    if first is None:
        return None
    if len(inline_labels(lines[0])) >= 2:  # Yahoo: the whole block on one line
        fields, body_start = one_line_fields(lines[0], forms)
        body = lines.after(1, body_start if body_start.strip() else None)
    else:
        fields, end = read_fields(lines)
        body = lines.after(end)
    return fields, body
