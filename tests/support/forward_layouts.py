"""How each mail client lays out a forward (and a reply) of the same original, from its own
localised strings: the layouts behind tests/support/forward_cases.py."""

from __future__ import annotations

import html
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_skeleton, format_time
from babel.dates import format_datetime as babel_datetime

TIMEZONE = "Europe/Paris"
PARIS = ZoneInfo(TIMEZONE)
SENT_AT = datetime(2021, 10, 27, 9, 31, tzinfo=PARIS)  # the original, in the forwarder's zone
ADDRESS = "john.doe@acme.com"
NAME = "John Doe"
SUBJECT = "Integer consequat non purus"
TO = "bessie.berry@acme.com"
CC = "Walter Sheltan <walter.sheltan@acme.com>"
PARAGRAPHS = (
    "Aenean quis diam urna. Maecenas eleifend vulputate ligula ac consequat. "
    "Pellentesque cursus tincidunt mauris non venenatis.",
    "Sed nec facilisis tellus. Nunc eget eros quis ante laoreet sagittis. "
    "Ut sed tellus nec felis volutpat facilisis.",
)


@dataclass(frozen=True)
class Story:
    """The variable part of one case: who wrote the original, its subject, the note."""

    name: str = NAME
    subject: str = SUBJECT
    note: str = ""
    flowed: bool = False


@dataclass(frozen=True)
class Built:
    plain: str | None
    html: str | None
    prefix: str  # the forward (or reply) prefix the client puts before the outer subject
    flowed: bool = False


Strings = dict[str, Any]


# --- localised dates (CLDR via babel) ------------------------------------------------------


def rfc_date() -> str:
    """The original's own Date header, which Thunderbird copies as it is."""
    return format_datetime(SENT_AT)


def outlook_date(loc: str) -> str:
    """Outlook's "Sent:": the long (full) date then the short time of the user's locale."""
    return f"{format_date(SENT_AT, 'full', locale=loc)} {short_time(loc)}"


def gmail_date(loc: str) -> str:
    """Gmail's "Date:": abbreviated weekday and month, then the time."""
    glue = str(Locale.parse(loc).datetime_formats["medium"])
    day = format_skeleton("yMMMEd", SENT_AT, locale=loc)
    return glue.replace("{1}", day).replace("{0}", short_time(loc))


def apple_date(loc: str) -> str:
    """Apple Mail's "Date:": the long date and time with the zone."""
    return babel_datetime(SENT_AT, "long", tzinfo=PARIS, locale=loc)


def yahoo_date(loc: str) -> str:
    """Yahoo's "Sent:": the full date, the time with seconds, and the offset."""
    time = format_time(SENT_AT, "medium", tzinfo=PARIS, locale=loc)
    return f"{format_date(SENT_AT, 'full', locale=loc)}, {time} GMT+2"


def short_date(loc: str) -> str:
    return format_date(SENT_AT, "short", locale=loc)


def short_time(loc: str) -> str:
    return format_time(SENT_AT, "short", tzinfo=PARIS, locale=loc)


# --- building blocks -------------------------------------------------------------------------


def person(name: str) -> str:
    return f"{name} <{ADDRESS}>"


def esc(value: str) -> str:
    return html.escape(value, quote=False)


def body_text(flowed: bool = False) -> str:
    if not flowed:
        return "\n\n".join(PARAGRAPHS)
    # RFC 3676: a line ending in a space continues on the next line (a soft break).
    return "\n\n".join(" \n".join(textwrap.wrap(p, 40)) for p in PARAGRAPHS)


def body_html() -> str:
    return f"<div>{esc(PARAGRAPHS[0])}</div>\n<div><br></div>\n<div>{esc(PARAGRAPHS[1])}</div>"


def with_note(story: Story, text: str) -> str:
    return f"{story.note}\n\n{text}" if story.note else text


def reply_line(template: str, loc: str, who: str) -> str:
    """Thunderbird's localised "On #2 #3, #1 wrote:" with its short date and time."""
    return template.replace("#1", who).replace("#2", short_date(loc)).replace("#3", short_time(loc))


# --- layouts ---------------------------------------------------------------------------------


def thunderbird_text(s: Strings, loc: str, story: Story) -> Built:
    """libmime's plain-text forward (mimedrft.cpp): the header table becomes label: TAB value."""
    tb = s["thunderbird"]
    rows = [
        (tb["subject"], story.subject),
        (tb["date"], rfc_date()),
        (tb["from"], person(story.name)),
        (tb["to"], TO),
        (tb["cc"], CC),
    ]
    head = "\n".join(f"{label}: \t{value}" for label, value in rows)
    text = f"\n\n{tb['forward']}\n{head}\n\n\n{body_text(story.flowed)}\n"
    return Built(plain=text, html=None, prefix="Fwd", flowed=story.flowed)


def thunderbird_html(s: Strings, loc: str, story: Story) -> Built:
    """The moz-forward-container (nsMsgCompose.cpp) around moz-email-headers-table rows."""
    tb = s["thunderbird"]
    rows = [
        (tb["subject"], story.subject),
        (tb["date"], rfc_date()),
        (tb["from"], person(story.name)),
        (tb["to"], TO),
        (tb["cc"], CC),
    ]
    trs = "\n".join(
        "          <tr>\n"
        f'            <th valign="BASELINE" nowrap="nowrap" align="RIGHT">{esc(label)}:\n'
        "            </th>\n"
        f"            <td>{esc(value)}</td>\n"
        "          </tr>"
        for label, value in rows
    )
    markup = (
        "<html>\n  <head>\n"
        '    <meta http-equiv="content-type" content="text/html; charset=UTF-8">\n'
        "  </head>\n  <body>\n    <p><br>\n    </p>\n"
        '    <div class="moz-forward-container"><br>\n      <br>\n'
        f"      {esc(tb['forward'])}\n"
        '      <table class="moz-email-headers-table" cellspacing="0" cellpadding="0"'
        ' border="0">\n        <tbody>\n'
        f"{trs}\n        </tbody>\n      </table>\n      <br>\n      <br>\n"
        f"      {body_html()}\n    </div>\n  </body>\n</html>\n"
    )
    return Built(plain=None, html=markup, prefix="Fwd")


def outlook_text(s: Strings, loc: str, story: Story) -> Built:
    ol = s["outlook"]
    rows = [
        (ol["from"], person(story.name)),
        (ol["sent"], outlook_date(loc)),
        (ol["to"], f"{TO} <{TO}>"),
        (ol["cc"], CC),
        (ol["subject"], story.subject),
    ]
    head = "\n".join(f"{label}: {value}" for label, value in rows)
    text = with_note(story, f"{ol['separator']}\n{head}\n\n{body_text()}\n")
    return Built(plain=text, html=None, prefix=ol["forward_prefix"])


def outlook_html(s: Strings, loc: str, story: Story) -> Built:
    """Outlook on the web / new Outlook: the divRplyFwdMsg block under an <hr>."""
    ol = s["outlook"]
    rows = [
        (ol["from"], person(story.name)),
        (ol["sent"], outlook_date(loc)),
        (ol["to"], f"{TO} <{TO}>"),
        (ol["cc"], CC),
        (ol["subject"], story.subject),
    ]
    head = "<br>\n".join(f"<b>{esc(label)}:</b> {esc(value)}" for label, value in rows)
    direction = "rtl" if loc.startswith(("he", "ar")) else "ltr"
    note = (
        '<div style="font-family: Aptos, Calibri, Helvetica, sans-serif; font-size: 12pt;">'
        f"{esc(story.note)}</div>\n"
        if story.note
        else ""
    )
    markup = (
        '<html><head>\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
        f'</head>\n<body dir="{direction}">\n{note}<div id="appendonsend"></div>\n'
        '<hr style="display:inline-block;width:98%" tabindex="-1">\n'
        f'<div id="divRplyFwdMsg" dir="{direction}"><font face="Calibri, sans-serif"'
        f' style="font-size:11pt" color="#000000">{head}</font>\n<div>&nbsp;</div>\n</div>\n'
        f'<div dir="{direction}">\n{body_html()}\n</div>\n</body>\n</html>\n'
    )
    return Built(plain=None, html=markup, prefix=ol["forward_prefix"])


def outlook_quote(s: Strings, loc: str, story: Story) -> Built:
    """Outlook desktop's quoted form: one unindented "… wrote:" line, the body indented
    with four spaces (as in shared/fixtures/forwarded/outlook_2019_*), under a forward
    subject. The line is the locale's own (Thunderbird's reply header)."""
    return _quoted(s, loc, story, "    ")


def quoted_reply(s: Strings, loc: str, story: Story) -> Built:
    """The same line over a body quoted with "> ": a reply's quote (as HubSpot and Apple
    Mail write it, shared/fixtures/forwarded/*_variant_4), not a forward, even under a
    forward subject."""
    return _quoted(s, loc, story, "> ")


def _quoted(s: Strings, loc: str, story: Story, indent: str) -> Built:
    tb, ol = s["thunderbird"], s["outlook"]
    line = reply_line(tb["reply"], loc, f'"{story.name}" <{ADDRESS}>')
    quoted = "\n".join(
        (indent + row) if row else indent.rstrip() for row in body_text().split("\n")
    )
    return Built(plain=f"{line}\n{quoted}\n", html=None, prefix=ol["forward_prefix"])


def gmail_text(s: Strings, loc: str, story: Story) -> Built:
    gm = s["gmail"]
    rows = [
        (gm["from"], person(story.name)),
        (gm["date"], gmail_date(loc)),
        (gm["subject"], story.subject),
        (gm["to"], f"<{TO}>"),
        (gm["cc"], CC),
    ]
    head = "\n".join(f"{label}: {value}" for label, value in rows)
    text = with_note(story, f"{gm['forward']}\n{head}\n\n\n{body_text()}\n")
    return Built(plain=text, html=None, prefix="Fwd")


def gmail_html(s: Strings, loc: str, story: Story) -> Built:
    gm = s["gmail"]

    def mailto(address: str) -> str:
        return f'&lt;<a href="mailto:{address}">{address}</a>&gt;'

    sender = (
        f'<strong class="gmail_sendername" dir="auto">{esc(story.name)}</strong>'
        f' <span dir="auto">{mailto(ADDRESS)}</span>'
    )
    rows = [
        f"{esc(gm['from'])}: {sender}",
        f"{esc(gm['date'])}: {esc(gmail_date(loc))}",
        f"{esc(gm['subject'])}: {esc(story.subject)}",
        f"{esc(gm['to'])}:  {mailto(TO)}",
        f"{esc(gm['cc'])}: Walter Sheltan {mailto('walter.sheltan@acme.com')}",
    ]
    attr = "<br>".join([esc(gm["forward"]), *rows]) + "<br>"
    note = f"{esc(story.note)}<br>" if story.note else ""
    markup = (
        f'<div dir="ltr">{note}<br><div class="gmail_quote">'
        f'<div dir="ltr" class="gmail_attr">{attr}</div><br><br>'
        f'<div dir="ltr">{body_html()}</div>\n</div></div>\n'
    )
    return Built(plain=None, html=markup, prefix="Fwd")


def apple_text(s: Strings, loc: str, story: Story) -> Built:
    ap = s["apple"]
    rows = [
        (ap["from"], person(story.name)),
        (ap["subject"], story.subject),
        (ap["date"], apple_date(loc)),
        (ap["to"], TO),
        (ap["cc"], CC),
    ]
    head = "\n".join(f"{label}: {value}" for label, value in rows)
    text = with_note(story, f"{ap['begin']}\n\n{head}\n\n{body_text()}\n")
    return Built(plain=text, html=None, prefix="Fwd")


def apple_html(s: Strings, loc: str, story: Story) -> Built:
    """Apple Mail: "Begin forwarded message:" in a blockquote, one <div> per header."""
    ap = s["apple"]
    font = "font-family: -webkit-system-font, Helvetica Neue, Helvetica, sans-serif;"
    mailto = f'&lt;<a href="mailto:{ADDRESS}">{ADDRESS}</a>&gt;'
    rows = [
        (ap["from"], f"{esc(story.name)} {mailto}"),
        (ap["subject"], f"<b>{esc(story.subject)}</b>"),
        (ap["date"], esc(apple_date(loc))),
        (ap["to"], f'<a href="mailto:{TO}">{TO}</a>'),
        (ap["cc"], esc(CC)),
    ]
    divs = "\n".join(
        '<div style="margin-top: 0px; margin-right: 0px; margin-bottom: 0px; margin-left: 0px;">'
        f'<span style="{font} color:rgba(0, 0, 0, 1.0);"><b>{esc(label)}: </b></span>'
        f'<span style="{font}">{value}<br></span></div>'
        for label, value in rows
    )
    note = f"<div>{esc(story.note)}</div>" if story.note else ""
    markup = (
        '<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>'
        '<body style="overflow-wrap: break-word; -webkit-nbsp-mode: space;'
        f' line-break: after-white-space;">{note}<div><br><blockquote type="cite">'
        f'<div>{esc(ap["begin"])}</div><br class="Apple-interchange-newline">\n{divs}\n'
        f"<br><div>{body_html()}</div></blockquote></div><br></body></html>\n"
    )
    return Built(plain=None, html=markup, prefix="Fwd")


def yahoo_oneline(s: Strings, loc: str, story: Story) -> Built:
    """Yahoo's text part: the marker and the whole header block run together on one line."""
    ya = s["yahoo"]
    rows = [
        (ya["from"], person(story.name)),
        (ya["to"], f"{TO} <{TO}>"),
        (ya["cc"], CC),
        (ya["sent"], yahoo_date(loc)),
        (ya["subject"], story.subject),
    ]
    line = f"{ya['forward']} " + "".join(f"{label}: {value}" for label, value in rows)
    return Built(plain=with_note(story, f"{line}\n\n{body_text()}\n"), html=None, prefix="Fwd")


def reply_thunderbird(s: Strings, loc: str, story: Story) -> Built:
    """Not a forward: a Thunderbird reply quoting the customer under its "… wrote:" line."""
    tb = s["thunderbird"]
    quoted = "\n".join(f"> {row}" if row else ">" for row in body_text().split("\n"))
    line = reply_line(tb["reply"], loc, story.name)
    return Built(plain=f"Thanks — Anna\n\n{line}\n{quoted}\n", html=None, prefix="Re")


def reply_outlook(s: Strings, loc: str, story: Story) -> Built:
    """Not a forward: an Outlook reply (localised reply prefix) over the customer's header block."""
    ol = s["outlook"]
    rows = [
        (ol["from"], person(story.name)),
        (ol["sent"], outlook_date(loc)),
        (ol["to"], f"{TO} <{TO}>"),
        (ol["subject"], story.subject),
    ]
    head = "\n".join(f"{label}: {value}" for label, value in rows)
    text = f"Thanks — Anna\n\n{ol['separator']}\n{head}\n\n{body_text()}\n"
    return Built(plain=text, html=None, prefix=ol["reply_prefix"])


def plain_mail(s: Strings, loc: str, story: Story) -> Built:
    """Not a forward: the user's own mail about the same matter."""
    return Built(plain=f"{body_text()}\n", html=None, prefix="")


Layout = Callable[[Strings, str, Story], Built]
# layout name -> (client whose strings it needs, builder, a forward?)
LAYOUTS: dict[str, tuple[str, Layout, bool]] = {
    "thunderbird_text": ("thunderbird", thunderbird_text, True),
    "thunderbird_html": ("thunderbird", thunderbird_html, True),
    "thunderbird_flowed": ("thunderbird", thunderbird_text, True),
    "outlook_text": ("outlook", outlook_text, True),
    "outlook_html": ("outlook", outlook_html, True),
    "outlook_quote": ("outlook", outlook_quote, True),
    "gmail_text": ("gmail", gmail_text, True),
    "gmail_html": ("gmail", gmail_html, True),
    "apple_text": ("apple", apple_text, True),
    "apple_html": ("apple", apple_html, True),
    "yahoo_oneline": ("yahoo", yahoo_oneline, True),
    "neg_reply_thunderbird": ("thunderbird", reply_thunderbird, False),
    "neg_reply_outlook": ("outlook", reply_outlook, False),
    "neg_quoted_reply": ("outlook", quoted_reply, False),
    "neg_plain": ("thunderbird", plain_mail, False),
}
NOTED_LAYOUTS = {"outlook_text", "outlook_html", "gmail_html", "apple_text", "yahoo_oneline"}
