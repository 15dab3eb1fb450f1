"""Forward detection: which part of a mail is the customer's original message.

Reads the text body the way a person does: the first (outermost) forward marker or
localised header block ("From:/De :/Von:/מאת:…"), the header lines under it, the body after
it; what the user wrote above it is their note. Dates are read by `dateparser` (the only
import of it), in any language.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses, parsedate_to_datetime

import dateparser

Address = tuple[str, str]

# Header labels of forwarded blocks, by field, in the languages users write (lower case).
LABELS: dict[str, tuple[str, ...]] = {
    "from": (
        "from",
        "de",
        "von",
        "de la",
        "expeditorul",
        "expeditor",
        "מאת",
        "от",
        "від",
        "od",
        "da",
        "van",
        "från",
        "fra",
        "lähettäjä",
        "feladó",
        "kimden",
        "差出人",
        "送信者",
        "saatja",
        "afsender",
        "avsender",
        "napsal",
        "šalje",
        "pošiljatelj",
        "nadawca",
        "remetente",
        "mittente",
        "verzender",
        "lähettäjä",
        "kimden",
        "gönderen",
        "odesílatel",
        "odosielateľ",
        "від кого",
        "отправитель",
        "saatja",
        "frá",
    ),
    "date": (
        "date",
        "sent",
        "envoyé",
        "envoyé le",
        "gesendet",
        "datum",
        "enviado",
        "fecha",
        "trimis",
        "dată",
        "data",
        "נשלח",
        "תאריך",
        "отправлено",
        "дата",
        "надіслано",
        "wysłano",
        "inviato",
        "verzonden",
        "skickat",
        "sendt",
        "lähetetty",
        "päivämäärä",
        "elküldve",
        "dátum",
        "gönderildi",
        "tarih",
        "送信日時",
        "日付",
        "odesláno",
        "odoslané",
        "poslano",
        "saadetud",
        "kuupäev",
        "enviada",
        "sendt den",
        "skickat den",
    ),
    "to": (
        "to",
        "à",
        "a",
        "an",
        "para",
        "către",
        "destinatarul",
        "destinatar",
        "אל",
        "кому",
        "do",
        "aan",
        "till",
        "til",
        "vastaanottaja",
        "címzett",
        "kime",
        "alıcı",
        "宛先",
        "komu",
        "prima",
        "kellele",
        "adressat",
        "mottagare",
        "pour",
    ),
    "cc": (
        "cc",
        "kopie",
        "kopie (cc)",
        "cópia",
        "copia",
        "cópia (cc)",
        "עותק",
        "копия",
        "копія",
        "dw",
        "kopia",
        "kopio",
        "másolat",
        "bilgi",
        "kopi",
        "kopie (cc)",
        "cc (kopie)",
        "ccn",
        "másolatot kap",
        "koopia",
        "copie",
        "copie à",
    ),
    "subject": (
        "subject",
        "objet",
        "betreff",
        "asunto",
        "subiect",
        "subiectul",
        "נושא",
        "тема",
        "temat",
        "oggetto",
        "onderwerp",
        "ämne",
        "emne",
        "aihe",
        "tárgy",
        "konu",
        "件名",
        "assunto",
        "předmět",
        "predmet",
        "teema",
        "efni",
        "sujet",
    ),
}
_LABEL_FIELD = {label: name for name, labels in LABELS.items() for label in labels}

# "---------- Forwarded message ----------" and its relatives ("Begin forwarded message:").
FORWARD_PHRASES = (
    "forwarded message",
    "original message",
    "begin forwarded message",
    "message transféré",
    "message transmis",
    "message d'origine",
    "début du message réexpédié",
    "début du message transféré",
    "weitergeleitete nachricht",
    "ursprüngliche nachricht",
    "anfang der weitergeleiteten nachricht",
    "mensaje reenviado",
    "mensaje original",
    "inicio del mensaje reenviado",
    "mesaj redirecționat",
    "mesajul redirecționat",
    "începe mesajul redirecționat",
    "mesaj original",
    "mesaj transmis",
    "mesaj redirecţionat",
    "הודעה שהועברה",
    "הודעה מקורית",
    "пересланное сообщение",
    "исходное сообщение",
    "переслане повідомлення",
    "оригінальне повідомлення",
    "wiadomość przekazana",
    "przekazana wiadomość",
    "oryginalna wiadomość",
    "messaggio inoltrato",
    "messaggio originale",
    "inizio messaggio inoltrato",
    "doorgestuurd bericht",
    "oorspronkelijk bericht",
    "begin doorgestuurd bericht",
    "vidarebefordrat meddelande",
    "ursprungligt meddelande",
    "videresendt meddelelse",
    "oprindelig meddelelse",
    "videresendt melding",
    "opprinnelig melding",
    "välitetty viesti",
    "alkuperäinen viesti",
    "továbbított üzenet",
    "eredeti üzenet",
    "iletilen ileti",
    "özgün ileti",
    "orijinal mesaj",
    "転送されたメッセージ",
    "元のメッセージ",
    "mensagem encaminhada",
    "mensagem original",
    "přeposlaná zpráva",
    "původní zpráva",
    "preposlaná správa",
    "pôvodná správa",
    "proslijeđena poruka",
    "izvorna poruka",
    "edastatud kiri",
    "algne kiri",
    "forwarded message:",
)
_PHRASE_RE = re.compile(
    r"^[\s>*_\-–—=]*(?:" + "|".join(re.escape(p) for p in FORWARD_PHRASES) + r")[\s:*_\-–—=]*",
    re.IGNORECASE,
)
# Reply-style quoting ("On <date>, <name> <address> wrote:") in the languages above.
_WROTE_RE = re.compile(
    r"^(?:on|le|am|el|în|il|op|em|dne|den|w dniu|dana|kl\.|в|)\s*(?P<date>.+?),?\s+"
    r"(?P<who>[^,<]*?<?[\w.+\-']+@[\w.\-]+>?)\s+"
    r"(?:wrote|a écrit|schrieb|escribió|a scris|ha scritto|schreef|escreveu|napsal|"
    r"napisał|написал|написав|skrev|kirjoitti|írta|yazdı|כתב|napisao|kirjutas)\s*:?\s*$",
    re.IGNORECASE,
)
_WROTE_VERB_FIRST_RE = re.compile(
    r"^(?:am|el|dne)\s+(?P<date>.+?),?\s+(?:schrieb|escribió|napsal)\s+"
    r"(?P<who>.+?@[\w.\-]+>?)\s*:?\s*$",
    re.IGNORECASE,
)
_HEADER_RE = re.compile(
    r"^\s*\*?(?P<label>[^\W\d_][^:：]{0,24}?)\s*\*?\s*[:：]\s*\*?\s*(?P<value>.*)$"
)
_FORWARD_SUBJECT = re.compile(
    r"^\s*(?:fwd?|fw|tr|wg|rv|enc|i|vs|vb|doorst|pd|prs|trs|redir\.?|továbbítás|ilt|"
    r"пересл|fwd?\s*\[\d+\]|转发|転送|העבר)\s*[:：]",
    re.IGNORECASE,
)
_REPLY_ONLY = re.compile(r"^\s*(?:re|aw|sv|odp|ynt|atb|res|antw|rif|r|ответ|השב)\s*[:：]", re.I)
_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|odp|ynt|atb|res|ref|antw|rif|r|tr|fwd?|fw|wg|rv|enc|i|pd|"
    r"doorst|redir\.?)\s*[:：]\s*)+",
    re.IGNORECASE,
)


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


def is_forward_subject(subject: str) -> bool:
    return bool(_FORWARD_SUBJECT.match(subject))


def strip_subject_prefixes(subject: str) -> str:
    return _REPLY_PREFIX.sub("", subject).strip()


def find_original(text: str, subject: str, timezone: str = "UTC") -> Original | None:
    """The outermost forwarded message in `text`, or None if the mail is not a forward.

    `timezone` reads dates that carry no offset (the forwarder's own local time). Under a
    reply subject ("Re:") a quoted message is the mail being answered: no forward. Markers
    quoted with ">" count only when no unquoted one is found (Apple Mail quotes its whole
    forward; a reply quoting an older forward does not make the mail a forward).
    """
    if bool(_REPLY_ONLY.match(subject)) and not is_forward_subject(subject):
        return None
    lines = _normalise(text).split("\n")
    for allow_quoted in (False, True):
        for index, line in enumerate(lines):
            if not allow_quoted and line.lstrip().startswith(">"):
                continue
            found = _forward_at(lines, index, subject, timezone)
            if found is not None and found.sender is not None:
                return _with_note(found, lines[:index])
    return None


def _forward_at(lines: list[str], index: int, subject: str, timezone: str) -> Original | None:
    """The forward that starts at line `index`, if one does."""
    line = lines[index]
    bare = _unquote(line)
    if _PHRASE_RE.match(bare) and _is_marker_line(bare):
        inline = _PHRASE_RE.sub("", bare, count=1).strip()
        rest = ([inline] if inline else []) + lines[index + 1 :]
        found = _header_block(rest, line, subject, timezone)
        if found is not None:
            return found
    if _field_of(bare) == "from" and _looks_like_header_block(lines, index):
        return _header_block(lines[index:], line, subject, timezone)
    wrote = _WROTE_RE.match(bare.strip()) or _WROTE_VERB_FIRST_RE.match(bare.strip())
    if wrote and _outlook_quoted_forward(lines, index, subject):
        return _wrote_block(wrote, lines[index + 1 :], subject, timezone)
    return None


# --- markers ---------------------------------------------------------------------------


# Invisible format characters clients put before markers (BOM, zero-width, bidi marks).
_INVISIBLE = re.compile("[\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def _normalise(text: str) -> str:
    return _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _unquote(line: str) -> str:
    return re.sub(r"^\s*(?:>\s?)+", "", line)


def _is_marker_line(line: str) -> bool:
    """A phrase line, not a sentence that happens to contain the words."""
    stripped = line.strip()
    return len(stripped) < 80 or bool(_HEADER_RE.match(_PHRASE_RE.sub("", stripped, count=1)))


def _field_of(line: str) -> str | None:
    match = _HEADER_RE.match(line)
    if not match:
        return None
    return _LABEL_FIELD.get(match.group("label").strip().strip("*").lower())


def _looks_like_header_block(lines: list[str], index: int) -> bool:
    """A From line followed closely by other header labels (date, subject or to)."""
    seen = set()
    for line in lines[index + 1 : index + 8]:
        name = _field_of(_unquote(line))
        if name:
            seen.add(name)
    return bool(seen & {"date", "subject"}) and bool(seen & {"date", "subject", "to"})


def _outlook_quoted_forward(lines: list[str], index: int, subject: str) -> bool:
    """Outlook desktop forwards as a quoted reply: an unindented "On … wrote:" line, then an
    indented body, under a forward subject. Anything else of that shape is a reply."""
    if not is_forward_subject(subject) or lines[index][:1] in (" ", "\t", ">"):
        return False
    body = [line for line in lines[index + 1 :] if line.strip()]
    return bool(body) and all(line.startswith(("    ", "\t")) for line in body[:3])


# --- blocks ----------------------------------------------------------------------------


def _header_block(lines: list[str], marker: str, subject: str, timezone: str) -> Original | None:
    first = next((line for line in lines if line.strip()), "")
    quoted = marker.lstrip().startswith(">") or first.lstrip().startswith(">")
    lines = [_unquote(line) if quoted else line for line in lines]
    # Yahoo runs the header lines together: split "…>À : …Envoyé : …" on known labels.
    lines = [part for line in lines for part in _split_run_together(line)]
    fields: dict[str, str] = {}
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    last = None
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            break
        name = _field_of(line)
        if name and name not in fields:
            match = _HEADER_RE.match(line)
            assert match is not None
            fields[name] = match.group("value").strip()
            last = name
        elif last in ("to", "cc") and "@" in line and not _field_of(line):
            fields[last] += " " + line.strip()  # a recipient list wrapped on the next line
        elif not name:
            break
        index += 1
    if "from" not in fields:
        return None
    body = lines[index:]
    return _original(fields, body, subject, timezone)


_ALL_LABELS = re.compile(
    "(?:"
    + "|".join(re.escape(label) for label in sorted(_LABEL_FIELD, key=len, reverse=True))
    + r")\s?[:：]\s",
    re.IGNORECASE,
)


def _split_run_together(line: str) -> list[str]:
    """Yahoo writes the header block on one line ("De: J <j@a.com>Para: …CETAsunto: …"):
    cut before each label that starts a word, or that is capitalised after other text."""
    if line.count(":") < 3:
        return [line]
    cuts = [0]
    for match in _ALL_LABELS.finditer(line):
        at = match.start()
        if at and (not line[at - 1].isalpha() or line[at].isupper()):
            cuts.append(at)
    parts = [line[a:b].strip() for a, b in zip(cuts, [*cuts[1:], len(line)], strict=True)]
    return [part for part in parts if part]


def _wrote_block(match: re.Match[str], lines: list[str], subject: str, timezone: str) -> Original:
    fields = {"from": match.group("who"), "date": match.group("date")}
    return _original(fields, lines, subject, timezone)


def _original(fields: dict[str, str], body: list[str], subject: str, timezone: str) -> Original:
    senders = _addresses(fields.get("from", ""))
    return Original(
        sender=senders[0] if senders else None,
        subject=fields.get("subject") or strip_subject_prefixes(subject),
        text=_body_text(body),
        note="",
        date=parse_date(fields.get("date", ""), timezone),
        date_text=fields.get("date", ""),
        to=_addresses(fields.get("to", "")),
        cc=_addresses(fields.get("cc", "")),
    )


def _with_note(found: Original | None, before: list[str]) -> Original | None:
    if found is None:
        return None
    while before and re.fullmatch(r"[\s_\-–—=*>]*", before[-1]):
        before = before[:-1]  # Outlook's "________" rule belongs to the forward, not the note
    note = "\n".join(before).strip()
    return Original(
        sender=found.sender,
        subject=found.subject,
        text=found.text,
        note=note,
        date=found.date,
        date_text=found.date_text,
        to=found.to,
        cc=found.cc,
    )


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
    value = value.replace("«", '"').replace("»", '"').replace(";", ",")
    found: list[Address] = []
    for name, address in getaddresses([value]):
        if "@" not in address:
            continue
        name = name.strip().strip("'\"").strip()
        if name.lower() == address.lower():
            name = ""
        found.append((name, address.strip()))
    return found


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


def parse_date(text: str, timezone: str = "UTC") -> datetime | None:
    """A localised date ("Donnerstag, 28. Oktober 2021 um 12:46", "26 octombrie 2021, 14:25:08
    EEST", "2021年10月27日 9:31"…) as an aware UTC datetime, or None."""
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return None
    try:  # RFC 5322 dates (Thunderbird, MailMate…) need no guessing
        exact = parsedate_to_datetime(text)
        if exact.tzinfo is not None:
            return exact.astimezone(UTC)
    except (TypeError, ValueError, IndexError):
        pass
    text = re.sub(r"\b(?:at|um|à|a las|às|alle|om|kl\.|klo|в|o)\b", " ", text, flags=re.I)
    text = _ZONE_WORDS.sub(lambda m: _ZONES[m.group(0).upper()], text)
    parsed = _date_parser(timezone).get_date_data(text).date_obj
    return parsed.astimezone(UTC) if parsed else None


@functools.lru_cache(maxsize=64)
def _date_parser(timezone: str) -> dateparser.date.DateDataParser:
    """One parser per time zone, built once (building one costs as much as a parse). A
    forward's header holds an absolute date: relative forms ("yesterday", "2 hours ago")
    are not tried, which also halves the time of a parse."""
    return dateparser.date.DateDataParser(
        settings={
            "TIMEZONE": timezone,
            "RETURN_AS_TIMEZONE_AWARE": True,
            "TO_TIMEZONE": "UTC",
            "PREFER_DATES_FROM": "past",
            "PARSERS": ["timestamp", "absolute-time"],
        }
    )
