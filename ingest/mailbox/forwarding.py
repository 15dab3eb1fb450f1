"""Forward detection: which part of a mail is the customer's original message.

Reads the body the way a person does, by the shape of the forwarded header block, in any
language: 2 to 8 "label: value" fields (one per line, or run together on one line), where
one field holds an address (the sender) and another reads as a date. Known labels
(`forward_hints`) only rank fields and name the date's language. Text above is the note.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses

from ingest.mailbox.dates import looks_like_date, parse_date
from ingest.mailbox.forward_hints import (
    FORWARD_PHRASES,
    FORWARD_PREFIXES,
    LABEL_FIELD,
    LABEL_LANGUAGES,
    REPLY_IN_LANGUAGES,
    REPLY_PREFIXES,
)
from ingest.mailbox.html_text import html_to_text

Address = tuple[str, str]

MAX_FIELDS = 8
MAX_DATE_TRIES = 12  # date fields read per mail (see _Dates)


@dataclass(frozen=True)
class Original:
    """The forwarded (customer's) message as found in the forwarder's mail."""

    sender: Address | None
    subject: str
    text: str
    note: str
    date: datetime | None = None
    date_text: str = ""
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    languages: tuple[str, ...] = ()  # of the header block's labels, where known


# --- subjects ----------------------------------------------------------------------------

# A subject prefix: one short word (or "Fwd[2]", "Пересл.") and a colon, in any script.
_PREFIX = re.compile(r"^\s*(?P<word>[^\W\d_]{1,12}(?:\.|\s?[\[(]\d+[\])])?)\s*[:：]\s*")


def _prefix_word(subject: str) -> str | None:
    match = _PREFIX.match(subject)
    return match.group("word").lower().rstrip(".") if match else None


def is_forward_subject(subject: str) -> bool:
    """A forward prefix: a known one, or any short word and colon that is not a reply's."""
    word = _prefix_word(subject)
    return word is not None and (word in FORWARD_PREFIXES or word not in REPLY_PREFIXES)


def _is_reply_subject(subject: str) -> bool:
    word = _prefix_word(subject)
    return word is not None and re.sub(r"[\[(]\d+[\])]", "", word).strip() in REPLY_PREFIXES


def strip_subject_prefixes(subject: str) -> str:
    """The subject without its forward and reply prefixes: known ones however many, then
    one unknown short word and colon ("Videresend:", "Továbbítás:") if nothing was known."""
    stripped = subject.strip()
    known = False
    while (word := _prefix_word(stripped)) is not None:
        bare = re.sub(r"[\[(]\d+[\])]", "", word).strip()
        if bare not in FORWARD_PREFIXES and bare not in REPLY_PREFIXES:
            if known:
                break
            known = True  # one unknown prefix at most
        else:
            known = True
        rest = _PREFIX.sub("", stripped, count=1).strip()
        if not rest:
            break
        stripped = rest
    return stripped


def _subject_forms(subject: str) -> set[str]:
    """The outer subject after each of its first colons: one of these is the original's."""
    forms = {_norm(subject)}
    rest = subject
    for _ in range(3):
        _head, colon, rest = rest.partition(":")
        if not colon:
            break
        forms.add(_norm(rest))
    forms.add(_norm(strip_subject_prefixes(subject)))
    return {form for form in forms if form}


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


# --- lines -------------------------------------------------------------------------------

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
_EMAIL = re.compile(r"[\w.+\-'=/!#$%&*?^`{|}~]+@[\w\-]+(?:\.[\w\-]+)+")


def _normalise(text: str) -> str:
    return _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _unquote(line: str) -> str:
    return re.sub(r"^\s*(?:>\s?)+", "", line)


@dataclass
class _Field:
    label: str
    value: str

    @property
    def hint(self) -> str | None:
        return LABEL_FIELD.get(self.label.lower())


def _field(line: str) -> _Field | None:
    """A "label: value" line; a label is one to four words, not a URL or a prefix."""
    match = _FIELD.match(line)
    if not match:
        return None
    label = " ".join(match.group("label").split()).strip("*_ ")
    words = label.split()
    if not words or len(words) > 4 or label.lower() in ("http", "https", "mailto"):
        return None
    value = match.group("value").strip().strip("*_").strip()
    return _Field(label, value)


def _separator(line: str) -> str | None:
    """The rest of a separator line (may be ""), or None if it is not one."""
    dashed = _DASHED.match(line)
    if dashed:
        return dashed.group("rest")
    phrase = _PHRASE.match(line)
    if phrase and len(line.strip()) < 80:
        return line[phrase.end() :]
    return None


# --- finding the forward -----------------------------------------------------------------


def find_original(
    text: str, subject: str, timezone: str = "UTC", html: str = ""
) -> Original | None:
    """The outermost forwarded message in `text` (else in `html`, read by its tree), or
    None if the mail is not a forward.

    `timezone` reads dates that carry no offset (the forwarder's local time). Under a reply
    subject ("Re:") a quoted message is the mail being answered: no forward. Blocks quoted
    with ">" count only when no unquoted one is found (Apple Mail quotes its whole forward;
    a reply quoting an older forward does not make the mail a forward).
    """
    if _is_reply_subject(subject):
        return None
    dates = _Dates(timezone)
    found = _scan(_normalise(text).split("\n"), subject, dates)
    if found is None and html and is_forward_subject(subject):
        found = _scan(_normalise(html_to_text(html)).split("\n"), subject, dates)
    word = _prefix_word(subject)
    replies_in = REPLY_IN_LANGUAGES.get(word or "", frozenset())
    if found is not None and found.languages and found.languages[0] in replies_in:
        return None  # "VS:" over a Finnish block: a reply
    return found


class _Dates:
    """Reads dates in the forwarder's zone, at most `MAX_DATE_TRIES` times per mail: a date
    that fails costs dateparser tens of milliseconds, and a hostile body of thousands of
    address-and-date-like blocks must not hold a worker for minutes."""

    def __init__(self, timezone: str) -> None:
        self.timezone = timezone
        self.tries = 0

    def parse(self, text: str, languages: tuple[str, ...] = ()) -> datetime | None:
        if self.tries >= MAX_DATE_TRIES:
            return None
        self.tries += 1
        return parse_date(text, self.timezone, languages)


def _scan(lines: list[str], subject: str, dates: _Dates) -> Original | None:
    forms = _subject_forms(subject)
    for quoted in (False, True):
        view = [_unquote(line) for line in lines] if quoted else lines
        for index, line in enumerate(lines):
            if line.lstrip().startswith(">") != quoted:
                continue
            found = _forward_at(view, index, subject, forms, dates)
            if found is not None:
                return found
    return None


def _forward_at(
    lines: list[str], index: int, subject: str, forms: set[str], dates: _Dates
) -> Original | None:
    """The forward that starts at line `index`, if one does."""
    line = lines[index]
    rest = _separator(line)
    if rest is not None:
        after = lines[index + 1 :]
        if rest.strip():
            after = [rest, *after]
        while after and not after[0].strip():
            after = after[1:]
        found = _block(after, subject, forms, dates, marker=True)
        return _with_note(found, lines[:index])
    if _field(line) is not None:
        marker = _marker_above(lines, index)
        found = _block(lines[index:], subject, forms, dates, marker)
        if found is not None:
            before = lines[:index]
            if marker:
                while before and not before[-1].strip():
                    before = before[:-1]
                before = before[:-1]  # "Begin forwarded message:" in any language
            return _with_note(found, before)
    quoted = _quote_header(lines, index, subject, dates)
    return _with_note(quoted, lines[:index])


def _marker_above(lines: list[str], index: int) -> bool:
    """A short line ending with a colon just above the block ("Begin forwarded message:")."""
    above = index - 1
    while above >= 0 and not lines[above].strip() and above >= index - 2:
        above -= 1
    if above < 0 or not lines[above].strip():
        return False
    text = lines[above].strip()
    return (text.endswith((":", "：")) and len(text) <= 60 and _field(text) is None) or (
        _separator(text) is not None
    )


# --- the header block --------------------------------------------------------------------


def _block(
    lines: list[str], subject: str, forms: set[str], dates: _Dates, marker: bool
) -> Original | None:
    """Read the header block at the top of `lines` and the body under it."""
    if not lines:
        return None
    first = _field(lines[0])
    if first is None:
        return None
    if len(_inline_labels(lines[0])) >= 2:  # Yahoo: the whole block on one line
        fields, body_start = _one_line(lines[0], forms)
        body = [body_start, *lines[1:]] if body_start.strip() else lines[1:]
    else:
        fields, end = _fields(lines)
        body = lines[end:]
    return _classify(fields, body, forms, dates, marker, is_forward_subject(subject))


def _fields(lines: list[str]) -> tuple[list[_Field], int]:
    fields: list[_Field] = []
    index = 0
    while index < len(lines) and len(fields) < MAX_FIELDS:
        line = lines[index]
        if not line.strip():
            ahead = index + 1
            while ahead < len(lines) and ahead <= index + 2 and not lines[ahead].strip():
                ahead += 1
            if not _complete(fields) and ahead < len(lines) and _field(lines[ahead]):
                index = ahead  # a blank line inside a block not yet complete (HTML spacing)
                continue
            break
        found = _field(line)
        if found is None:
            if fields and "@" in fields[-1].value and _EMAIL.search(line) and len(line) < 200:
                fields[-1].value += " " + line.strip()  # a recipient list wrapped
                index += 1
                continue
            break
        if _body_line_under_subject(fields, found, lines[index + 1 : index + 2]):
            break
        fields.append(found)
        index += 1
    return fields, index


def _body_line_under_subject(fields: list[_Field], found: _Field, after: list[str]) -> bool:
    """The body's first line ("Note: …") right under a block that ends with its subject
    (Outlook), and not a further header field: no known label, address or date, and no
    field line after it."""
    if not fields or fields[-1].hint != "subject" or found.hint is not None:
        return False
    if _EMAIL.search(found.value) or looks_like_date(found.value):
        return False
    return not (after and _field(after[0]) is not None)


def _complete(fields: list[_Field]) -> bool:
    return any(_EMAIL.search(f.value) for f in fields) and any(
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


def _inline_labels(line: str) -> list[_Cut]:
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


def _one_line(line: str, forms: set[str]) -> tuple[list[_Field], str]:
    """Split a one-line block into fields; the outer subject, found in it, is its own field
    even when its label has no colon. Returns the fields and any text after the subject."""
    first = _FIELD.match(line)
    assert first is not None
    span = _subject_span(line, forms)
    cuts = [_Cut(0, first.start("value"), first.group("label").strip(" *_"))]
    cuts += [c for c in _inline_labels(line) if span is None or not span[0] <= c.start < span[1]]
    fields: list[_Field] = []
    after = ""
    for number, cut in enumerate(cuts):
        last = number + 1 == len(cuts)
        end = len(line) if last else cuts[number + 1].start
        label, value = cut.label, line[cut.end : end]
        if span is None or not cut.end <= span[0] < end:
            fields.append(_Field(label, value.strip().strip(";,")))
            continue
        head, subject_value = line[cut.end : span[0]], line[span[0] : span[1]]
        if head.strip():  # "… 09:31 Assunto Integer…": the subject's label has no colon
            words = head.rstrip().rsplit(None, 1)
            fields.append(_Field(label, words[0].strip() if len(words) > 1 else ""))
            label = words[-1]
        fields.append(_Field(label, subject_value.strip()))
        after = line[span[1] :] if last else ""
    return fields, after


def _subject_span(line: str, forms: set[str]) -> tuple[int, int] | None:
    folded = line.casefold()
    for form in sorted(forms, key=len, reverse=True):
        at = folded.rfind(form)
        if at > 0 and len(form) >= 3:
            return at, at + len(form)
    return None


def _classify(
    fields: list[_Field],
    body: list[str],
    forms: set[str],
    dates: _Dates,
    marker: bool,
    forward_subject: bool,
) -> Original | None:
    """Which field is what, by content first: the sender holds an address, the date parses,
    the subject equals the outer one; labels known in some language break ties."""
    if not 2 <= len(fields) <= MAX_FIELDS:
        return None
    hints = [f.hint for f in fields]
    addressed = [k for k, f in enumerate(fields) if _EMAIL.search(f.value)]
    sender_at = next((k for k in addressed if hints[k] == "from"), None)
    if sender_at is None:
        if "from" in hints:
            return None  # a sender named without an address (Exchange): nothing to match
        sender_at = next(
            (k for k in addressed if hints[k] is None and _norm(fields[k].value) not in forms),
            None,
        )
    if sender_at is None:
        return None
    subject_at = next(
        (k for k, f in enumerate(fields) if k != sender_at and _norm(f.value) in forms), None
    )
    matched_subject = subject_at is not None
    if subject_at is None:
        subject_at = next((k for k, h in enumerate(hints) if h == "subject"), None)
    votes = Counter(lang for f in fields for lang in LABEL_LANGUAGES.get(f.label.lower(), ()))
    languages = tuple(lang for lang, _count in votes.most_common())  # likeliest first
    date, date_at = None, None
    order = [k for k, h in enumerate(hints) if h == "date"] + [
        k for k, h in enumerate(hints) if h is None and k not in (sender_at, subject_at)
    ]
    for k in order:
        if looks_like_date(fields[k].value):
            date = dates.parse(fields[k].value, languages)
            if date is not None and date > datetime.now(UTC) + timedelta(days=1):
                date = None  # an original is older than its forward ("2564": a Thai year)
            if date is not None:
                date_at = k
                break
    known = sum(1 for h in hints if h is not None)
    # A bare block ("Name: Bob / Email: bob@x.com / Date: …", a web form pasted in a mail)
    # is a forward only under a forward subject, and only with a date.
    bare = not (marker or known >= 2 or matched_subject)
    if bare and (date is None or not forward_subject):
        return None
    if subject_at is None:
        subject_at = next(
            (
                k
                for k, f in enumerate(fields)
                if k not in (sender_at, date_at)
                and hints[k] is None
                and f.value
                and not _EMAIL.search(f.value)
            ),
            None,
        )
    taken = {sender_at, subject_at, date_at}
    to = [k for k in addressed if hints[k] == "to"]
    cc = [k for k in addressed if hints[k] == "cc"]
    rest = [
        k for k in addressed if k not in taken and k > sender_at and hints[k] not in ("to", "cc")
    ]
    rest = [k for k in rest if hints[k] != "reply-to" and hints[k] != "from"]
    if not to and rest:
        to = [rest.pop(0)]
    if not cc and rest:
        cc = [rest.pop(0)]
    senders = _addresses(fields[sender_at].value)
    if not senders:
        return None
    date_text = fields[date_at].value if date_at is not None else _date_text(fields, hints)
    return Original(
        sender=senders[0],
        subject=fields[subject_at].value if subject_at is not None else "",
        text=_body_text(body),
        note="",
        date=date,
        date_text=date_text,
        to=[a for k in to for a in _addresses(fields[k].value)],
        cc=[a for k in cc for a in _addresses(fields[k].value)],
        languages=languages,
    )


def _date_text(fields: list[_Field], hints: list[str | None]) -> str:
    return next((fields[k].value for k, h in enumerate(hints) if h == "date"), "")


# --- quote-style header: "<date> <verb> "Name" <address>:" over an indented original ----


def _quote_header(lines: list[str], index: int, subject: str, dates: _Dates) -> Original | None:
    """Outlook forwards in some locales as a quoted reply: one unindented line holding a
    date, the sender and a closing colon, then the original indented. Only under a forward
    subject: the same shape under any other subject is a reply."""
    line = lines[index]
    stripped = line.strip()
    if line[:1] in (" ", "\t", ">") or not stripped.endswith((":", "：")) or len(line) > 250:
        return None
    addresses = _EMAIL.findall(stripped)
    if len(addresses) != 1 or not is_forward_subject(subject):
        return None
    body = [b for b in lines[index + 1 :] if b.strip()]
    if not body or not all(b.startswith(("  ", "\t")) for b in body[:3]):
        return None
    at = stripped.find(addresses[0])
    before = stripped[:at].rstrip(" <([").rstrip()
    before = re.sub(r"\[?mailto:?$", "", before).rstrip()
    after = stripped[at + len(addresses[0]) :].lstrip(" >)]").rstrip(":： ")
    name, date_part = _name_at_end(before)
    # The date comes before the sender ("Le 27/10/2021, « John » <…> a écrit") or after it
    # ('"John" <…> kirjoitti 27.10.2021 klo 9.31', '"陳大文" <…> 於 2021/10/27 上午9:31 寫道').
    date = _date_in(date_part, dates)
    if date is None:
        date, date_part = _date_in(after, dates), after
    if date is None:
        return None
    return Original(
        sender=(name, addresses[0]),
        subject=strip_subject_prefixes(subject),
        text=_body_text(lines[index + 1 :]),
        note="",
        date=date,
        date_text=date_part,
    )


def _name_at_end(text: str) -> tuple[str, str]:
    """("John Doe", what comes before it) from '… "John Doe"', '… « John Doe »', '… John Doe'."""
    quoted = re.search(r"[\"“«]\s*([^\"”»]+?)\s*[\"”»]\s*,?$", text)
    if quoted:
        return quoted.group(1).strip(), text[: quoted.start()].rstrip(" ,")
    words = text.split()
    name: list[str] = []
    while words and len(name) < 4:
        word = words[-1].strip(",")
        if not word or any(c.isdigit() for c in word) or word[0].islower() or "," in words[-1]:
            break
        if word.isascii() and word.isupper() and len(word) <= 3:  # AM, PM, CET
            break
        name.insert(0, words.pop())
    return " ".join(name).strip(","), " ".join(words).rstrip(" ,")


def _date_in(text: str, dates: _Dates) -> datetime | None:
    """A date among a few words ("On", "Le", "skrev"…): the words from the first to the last
    holding a digit, then with up to three words before (weekday, month) and one after."""
    words = text.split()
    digits = [k for k, word in enumerate(words) if any(c.isdigit() for c in word)]
    if not digits:
        return None
    first, last = digits[0], digits[-1] + 1
    words[first] = re.sub(r"^[^\W\d]+[\u05be\-]?(?=\d)", "", words[first])  # "ב־27.10.2021"
    for before, after in ((0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)):
        if first - before < 0 or last + after > len(words):
            continue
        candidate = " ".join(words[first - before : last + after])
        if looks_like_date(candidate):
            date = dates.parse(candidate)
            if date is not None:
                return date
    return None


# --- the body, the note, addresses --------------------------------------------------------


def _with_note(found: Original | None, before: list[str]) -> Original | None:
    if found is None:
        return None
    while before and re.fullmatch(r"[\s_\-–—=*>]*", before[-1]):
        before = before[:-1]  # Outlook's "________" rule belongs to the forward, not the note
    return replace(found, note="\n".join(before).strip())


def _body_text(lines: list[str]) -> str:
    """The original's body: quoting and the indentation of quoted replies removed."""
    while lines and not lines[0].strip():
        lines = lines[1:]
    content = [line for line in lines if line.strip()]
    if content and all(line.lstrip().startswith(">") for line in content):
        lines = [_unquote(line) for line in lines]
    else:
        lines = [re.sub(r"^>\s?", "", line) if line.startswith(">") else line for line in lines]
    content = [line for line in lines if line.strip()]
    if content:
        indent = min(len(line) - len(line.lstrip(" \t")) for line in content)
        lines = [line[indent:] for line in lines]
    return "\n".join(line.rstrip() for line in lines).strip()


def _addresses(value: str) -> list[Address]:
    """Addresses as clients write them: Name <a@b>, "Name" [mailto:a@b], « Name » <a@b>…"""
    # Outlook: Name [mailto:address], where the name may itself look like an address.
    value = re.sub(
        r"([^,;<>\[\]]*?)\s*\[mailto:([^\]]+)\]",
        lambda m: f'"{m.group(1).strip().strip(chr(34))}" <{m.group(2).strip()}>',
        value,
    )
    value = re.sub(r"\"?([\w.+\-']+@[\w.\-]+)\"?\s*<\1>", r"<\1>", value)  # "a@b" <a@b>
    value = value.replace("«", '"').replace("»", '"').replace("“", '"').replace("”", '"')
    value = value.replace(";", ",").replace("，", ",").replace("；", ",")
    found: list[Address] = []
    for name, address in getaddresses([value]):
        if "@" not in address:
            continue
        name = name.strip().strip("'\"").strip()
        if name.lower() == address.lower():
            name = ""
        found.append((name, address.strip()))
    if not found:  # what getaddresses cannot split ("John Doe (john@x)" in some scripts)
        found = [("", address) for address in _EMAIL.findall(value)]
    return found
