"""Forwarded mails generated from mail clients' own localisation strings (fixtures/forward_l10n),
each a whole MIME message with what the forward detector must find in it. Run as
`python -m tests.support.forward_cases` for the pass rate per layout and per language.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from functools import cache
from pathlib import Path

from ingest.mailbox.forwarding import Original, find_original
from ingest.mailbox.parsing import parse_email
from tests.support.forward_layouts import (
    ADDRESS,
    LAYOUTS,
    NAME,
    NOTED_LAYOUTS,
    SUBJECT,
    TIMEZONE,
    Built,
    Story,
    Strings,
)

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "forward_l10n" / "strings.json"
SENT_UTC = datetime(2021, 10, 27, 7, 31, tzinfo=UTC)
BODY_START = "Aenean quis diam urna."
# A format=flowed body is wrapped inside this, so the soft break must be joined to match it.
FLOWED_START = "Aenean quis diam urna. Maecenas eleifend vulputate ligula ac consequat."
NOTE = "FYI — Anna"
FORWARDER = "Anna Sales <anna@example.com>"
ARCHIVE = "card-1@archive.example.com"  # replaced by a real archive address over SMTP
EXCLUDED = {"en", "fr", "ro", "de", "es"}  # languages the shared fixtures already cover


@dataclass(frozen=True)
class Expected:
    """What the detector must report for a forward: the customer's original message."""

    address: str
    name: str
    subject: str
    date: datetime
    body_start: str
    note: str


@dataclass(frozen=True)
class Case:
    id: str
    locale: str
    layout: str
    client: str
    raw: bytes
    expected: Expected | None  # None: not a forward
    source: str


@cache
def strings() -> dict[str, Strings]:
    data: dict[str, Strings] = json.loads(DATA.read_text(encoding="utf-8"))["locales"]
    return data


FLOWED_LOCALES = {"en", "sv", "pl", "ru", "ja", "cs"}


def story_for(code: str, s: Strings, layout: str) -> Story:
    """Locales with their own script get a name in it for HTML layouts and the quoted form,
    and a subject in it for the text layouts."""
    name = s.get("own_name", NAME) if layout.endswith(("_html", "_quote")) else NAME
    subject = s.get("own_subject", SUBJECT) if layout.endswith(("_text", "_oneline")) else SUBJECT
    note = NOTE if layout in NOTED_LAYOUTS else ""
    return Story(name=name, subject=subject, note=note, flowed=layout == "thunderbird_flowed")


def mime(subject: str, built: Built) -> bytes:
    message = EmailMessage()
    message["From"] = FORWARDER
    message["To"] = ARCHIVE
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="mail.example.com")
    if built.plain is not None:
        params = {"format": "flowed"} if built.flowed else None
        # quoted-printable keeps a flowed line's trailing space through any transport
        cte = "quoted-printable" if built.flowed else None
        message.set_content(built.plain, params=params, cte=cte)
    else:
        assert built.html is not None
        message.set_content(built.html, subtype="html")
    return message.as_bytes(policy=SMTP)


def build_case(code: str, layout: str) -> Case | None:
    s = strings()[code]
    client, builder, forward = LAYOUTS[layout]
    if client not in s or (layout == "thunderbird_flowed" and code not in FLOWED_LOCALES):
        return None
    if layout == "outlook_quote" and "thunderbird" not in s:
        return None
    story = story_for(code, s, layout)
    built = builder(s, s["babel"], story)
    subject = f"{built.prefix}: {story.subject}" if built.prefix else story.subject
    expected = None
    if forward:
        start = FLOWED_START if story.flowed else BODY_START
        expected = Expected(ADDRESS, story.name, story.subject, SENT_UTC, start, story.note)
    return Case(
        id=f"{code}-{layout}",
        locale=code,
        layout=layout,
        client=client,
        raw=mime(subject, built),
        expected=expected,
        source=str(s[client]["source"]),
    )


@cache
def all_cases() -> tuple[Case, ...]:
    found = [build_case(code, layout) for code in strings() for layout in LAYOUTS]
    return tuple(case for case in found if case is not None)


# --- running a case --------------------------------------------------------------------------


def find(text: str, subject: str, timezone: str, html_body: str) -> Original | None:
    """find_original, given the HTML too once its signature takes an `html` keyword."""
    call: Callable[..., Original | None] = find_original
    if "html" in inspect.signature(find_original).parameters:
        return call(text, subject, timezone, html=html_body)
    return call(text, subject, timezone)


def run(case: Case) -> Original | None:
    parsed = parse_email(case.raw)
    return find(parsed.text, parsed.subject, TIMEZONE, parsed.html)


def problems(case: Case, found: Original | None) -> list[str]:
    """How `found` differs from the case's expectation ([] when it matches)."""
    expected = case.expected
    if expected is None:
        return [] if found is None else [f"not a forward, but found {found.sender}"]
    if found is None:
        return ["no forward found"]
    got = {
        "address": found.sender[1] if found.sender else None,
        "name": found.sender[0] if found.sender else None,
        "subject": found.subject,
        "date": found.date,
        "note": found.note,
    }
    wanted = {
        "address": expected.address,
        "name": expected.name,
        "subject": expected.subject,
        "date": expected.date,
        "note": expected.note,
    }
    out = [f"{key}: {got[key]!r} != {wanted[key]!r}" for key in wanted if got[key] != wanted[key]]
    if not found.text.startswith(expected.body_start):
        out.append(f"text starts {found.text[:60]!r}")
    return out


def summary() -> str:
    by_layout: dict[str, list[bool]] = defaultdict(list)
    by_locale: dict[str, list[bool]] = defaultdict(list)
    for case in all_cases():
        try:
            ok = not problems(case, run(case))
        except Exception:  # a crash counts as a failure of that case
            ok = False
        by_layout[case.layout].append(ok)
        by_locale[case.locale].append(ok)

    def table(title: str, rows: dict[str, list[bool]]) -> list[str]:
        lines = [f"{title:<24} pass/total"]
        for key in sorted(rows):
            results = rows[key]
            lines.append(f"  {key:<22} {sum(results):>3}/{len(results):<3} {rate(results)}")
        return lines

    every = [ok for results in by_layout.values() for ok in results]
    return "\n".join(
        [
            *table("layout", by_layout),
            *table("language", by_locale),
            f"all: {sum(every)}/{len(every)} {rate(every)}",
        ]
    )


def rate(results: list[bool]) -> str:
    return f"{100 * sum(results) / len(results):5.1f}%" if results else "  n/a"


def main() -> int:
    sys.stdout.write(summary() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
