"""Forward detection, in processing: which part of a mail is the customer's original. Read by
the shape of the forwarded header block (`header_block`), in any language; known labels
(`forward_hints`) only rank fields and name the date's language. Text above is the note.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import islice

from ingest.mailbox.dates import looks_like_date, parse_date
from ingest.mailbox.forward_hints import (
    FORWARD_PREFIXES,
    LABEL_LANGUAGES,
    REPLY_IN_LANGUAGES,
    REPLY_PREFIXES,
)
from ingest.mailbox.header_block import (
    EMAIL,
    MAX_FIELDS,
    Field,
    LinesFrom,
    normalise,
    read_field,
    separator_rest,
    split_block,
    unquote,
)
from ingest.mailbox.html_text import html_to_text
from ingest.mailbox.original_parts import Address, body_text, name_at_end, parse_addresses

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
    found = _scan(normalise(text).split("\n"), subject, dates)
    if found is None and html and is_forward_subject(subject):
        found = _scan(normalise(html_to_text(html)).split("\n"), subject, dates)
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
        view = [unquote(line) for line in lines] if quoted else lines
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
    rest = separator_rest(line)
    if rest is not None:
        after = LinesFrom(lines, index + 1, rest if rest.strip() else None)
        while after and not after[0].strip():
            after = after.after(1)
        found = _block(after, subject, forms, dates, marker=True)
        return None if found is None else _with_note(found, lines[:index])
    if read_field(line) is not None:
        marker = _marker_above(lines, index)
        found = _block(LinesFrom(lines, index), subject, forms, dates, marker)
        if found is not None:
            before = lines[:index]
            if marker:
                while before and not before[-1].strip():
                    before = before[:-1]
                before = before[:-1]  # "Begin forwarded message:" in any language
            return _with_note(found, before)
    quoted = _quote_header(lines, index, subject, dates)
    return None if quoted is None else _with_note(quoted, lines[:index])


def _marker_above(lines: list[str], index: int) -> bool:
    """A short line ending with a colon just above the block ("Begin forwarded message:")."""
    above = index - 1
    while above >= 0 and not lines[above].strip() and above >= index - 2:
        above -= 1
    if above < 0 or not lines[above].strip():
        return False
    text = lines[above].strip()
    return (text.endswith((":", "：")) and len(text) <= 60 and read_field(text) is None) or (
        separator_rest(text) is not None
    )


# --- the header block ------------------------------------------------------------------


def _block(
    lines: LinesFrom, subject: str, forms: set[str], dates: _Dates, marker: bool
) -> Original | None:
    """Read the header block at the top of `lines` and the body under it."""
    found = split_block(lines, forms)
    if found is None:
        return None
    fields, body = found
    return _classify(fields, body, forms, dates, marker, is_forward_subject(subject))


def _classify(
    fields: list[Field],
    body: Sequence[str],
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
    addressed = [k for k, f in enumerate(fields) if EMAIL.search(f.value)]
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
                and not EMAIL.search(f.value)
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
    senders = parse_addresses(fields[sender_at].value)
    if not senders:
        return None
    date_text = fields[date_at].value if date_at is not None else _date_text(fields, hints)
    return Original(
        sender=senders[0],
        subject=fields[subject_at].value if subject_at is not None else "",
        text=body_text(body),
        note="",
        date=date,
        date_text=date_text,
        to=[a for k in to for a in parse_addresses(fields[k].value)],
        cc=[a for k in cc for a in parse_addresses(fields[k].value)],
        languages=languages,
    )


def _date_text(fields: list[Field], hints: list[str | None]) -> str:
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
    addresses = EMAIL.findall(stripped)
    if len(addresses) != 1 or not is_forward_subject(subject):
        return None
    body = list(islice((b for b in LinesFrom(lines, index + 1) if b.strip()), 3))
    if not body or not all(b.startswith(("  ", "\t")) for b in body):
        return None
    at = stripped.find(addresses[0])
    before = stripped[:at].rstrip(" <([").rstrip()
    before = re.sub(r"\[?mailto:?$", "", before).rstrip()
    after = stripped[at + len(addresses[0]) :].lstrip(" >)]").rstrip(":： ")
    name, date_part = name_at_end(before)
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
        text=body_text(lines[index + 1 :]),
        note="",
        date=date,
        date_text=date_part,
    )


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


def _with_note(found: Original, before: list[str]) -> Original:
    while before and re.fullmatch(r"[\s_\-–—=*>]*", before[-1]):
        before = before[:-1]  # Outlook's "________" rule belongs to the forward, not the note
    return replace(found, note="\n".join(before).strip())
