"""Dates as mail clients write them in forwarded header blocks, in any language; the only
import of `dateparser` (whose month and weekday names come from Unicode CLDR).

Used by `forwarding` for a block's date field and to tell a date field from others.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import dateparser

# German and other localised zone names (Apple Mail writes "OESZ"), as offsets.
_ZONES = {
    "MEZ": "+0100",
    "MESZ": "+0200",
    "OEZ": "+0200",
    "OESZ": "+0300",
    "WEZ": "+0000",
    "WESZ": "+0100",
    "HNE": "-0500",
    "HAE": "-0400",
    "HNEC": "+0100",
    "HAEC": "+0200",
}
_ZONE_WORDS = re.compile(r"\b(?:" + "|".join(_ZONES) + r")\b", re.IGNORECASE)
# Words that join a date and its time ("at", "um", "à", "kl."): dateparser stumbles on some.
_JOINERS = re.compile(r"(?<!\w)(?:at|um|à|a las|às|alle|om|kl\.?|klo|в|o|у|ve|às)(?!\w)", re.I)
# CLDR patterns carry marks dateparser does not read: Lithuanian "2021 m. spalio 27 d.",
# Latvian "2021. gada", Hebrew geresh "באוק׳", Thai "ค.ศ." / "น.", Chinese/Korean day marks
# are read by dateparser itself.
_MARKS = re.compile(r"(?<!\w)(?:m\.|d\.|gada|ค\.ศ\.|น\.|г\.|р\.|godine)(?!\w)|[׳״]", re.I)
_DIGIT = re.compile(r"\d")
_OFFSET = re.compile(r"(?<!\w)(?:UTC|GMT)?[+-]\d\d:?\d\d(?!\d)")
_LAST_WORD = re.compile(r"(?<=\d)\s+[^\W\d_]{2,6}$")
_YEAR = re.compile(r"(?<!\d)(?:1[89]|20)\d\d(?!\d)")
_DOTTED_TIME = re.compile(r"(?<![\d.])(?:[01]?\d|2[0-3])\.[0-5]\d(?:\.[0-5]\d)?(?![\d.])")
# A date has a year or a time: "27/10/2021", "9:31", "09.31.00", "2021年".
_DATE_SHAPE = re.compile(r"(?:1[89]|20)\d\d|\d{1,2}[:.h]\d\d|\d\d?\s*[/.\-]\s*\d\d?")


def looks_like_date(text: str) -> bool:
    """Worth a parse: it has a year or a time, and is not an address."""
    return "@" not in text and bool(_DATE_SHAPE.search(text))


def parse_date(
    text: str, timezone: str = "UTC", languages: tuple[str, ...] = ()
) -> datetime | None:
    """A localised date ("Donnerstag, 28. Oktober 2021 um 12:46", "2021年10月27日 9:31"…) as an
    aware UTC datetime, or None. A date without an offset is in `timezone` (the forwarder's);
    `languages` are tried first (the block's language, from its labels), then any language.
    """
    text = re.sub(r"\s+", " ", text).strip().strip(",;")
    if not text or not _DIGIT.search(text) or len(text) > 120:
        return None
    try:  # RFC 5322 dates (Thunderbird, MailMate…) need no guessing
        exact = parsedate_to_datetime(text)
        if exact.tzinfo is not None:
            return exact.astimezone(UTC)
    except (TypeError, ValueError, IndexError):
        pass
    text = _ZONE_WORDS.sub(lambda m: _ZONES[m.group(0).upper()], text)
    plain = re.sub(r"\s+", " ", _JOINERS.sub(" ", text)).strip()
    bare = re.sub(r"\s+", " ", _MARKS.sub(" ", plain)).strip()
    if _YEAR.search(bare) and ":" not in bare:  # "2021 kl. 09.31.00": a time with dots
        bare = _DOTTED_TIME.sub(lambda m: m.group(0).replace(".", ":"), bare)
    tries = [plain] if bare == plain else [plain, bare]
    offset = _OFFSET.search(bare)
    if offset and bare[offset.end() :].strip():  # "2021年10月27日 +0200 09:31:00"
        tries.append(f"{bare[: offset.start()]} {bare[offset.end() :]} {offset.group(0)}")
    zone = _LAST_WORD.search(bare)
    if zone:  # a zone name dateparser does not know ("SELČ"): the forwarder's zone
        tries.append(bare[: zone.start()])
    for language in (*languages, None):
        try:
            parser = _parser(timezone, language)
        except ValueError:  # a language dateparser does not know
            continue
        for candidate in tries:
            parsed: datetime | None = parser.get_date_data(candidate).date_obj
            if parsed is not None:
                return parsed.astimezone(UTC)
    return None


@functools.lru_cache(maxsize=256)
def _parser(timezone: str, language: str | None) -> dateparser.date.DateDataParser:
    """One parser per time zone and language, built once (building costs as much as a
    parse). A forward's header holds an absolute date: relative forms ("yesterday") are
    not tried, which also halves the time of a parse."""
    return dateparser.date.DateDataParser(
        languages=[language] if language else None,
        settings={
            "TIMEZONE": timezone,
            "RETURN_AS_TIMEZONE_AWARE": True,
            "TO_TIMEZONE": "UTC",
            "PREFER_DATES_FROM": "past",
            "PARSERS": ["timestamp", "absolute-time"],
        },
    )
