"""Text of an HTML mail body; the only lxml import.

libxml2 parses hostile markup (unclosed tags, deep nesting, stray angle brackets) in linear
time, where backtracking regexes and some HTML5 parsers go quadratic and stall a worker.
"""

from __future__ import annotations

import html
import re
from typing import Any

from lxml import etree
from lxml import html as lxml_html

MAX_HTML_CHARS = 5_000_000  # beyond this an HTML body is cut before parsing
# Characters libxml2 refuses (control characters, non-characters, lone surrogates).
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ue000-\ue002\ufffe\uffff\ud800-\udfff]")

# How the tree breaks lines: these blocks start a new line, these also leave a blank one.
_LINE_BLOCKS = ("div", "li", "tr", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "address")
_PARAGRAPHS = ("p", "table", "blockquote", "ul", "ol", "dl", "pre", "hr")
_HIDDEN = "//script|//style|//head|//title|//comment()"
# Markers from Unicode's private use area (libxml2 refuses control characters); any in
# the mail itself are removed first.
_LINE, _PARAGRAPH, _EMPTY = "\ue000", "\ue001", "\ue002"
_SOURCE_SPACE = re.compile("[ \t\r\n\f]+")
_BREAKS = re.compile("[ \t]*[\n\ue000-\ue002][\n\ue000-\ue002 \t]*")


def html_to_text(markup: str) -> str:
    """Readable text, one line per line the page shows: a block (div, table row, list
    item) starts a line, a paragraph, table or quote is set off by a blank line, <br>
    breaks a line, and a two-cell row ("From" | "John") reads "From: John". So a header
    block of one element per field (Apple Mail, Thunderbird, Outlook on the web) reads as
    the "label: value" lines it shows, and forward detection reads it like plain text."""
    markup = _XML_UNSAFE.sub("", markup[:MAX_HTML_CHARS])
    if not markup.strip():
        return ""
    try:
        root = lxml_html.document_fromstring(markup)
    except (etree.ParserError, ValueError):  # empty document, or an encoding declaration
        try:
            root = lxml_html.document_fromstring(markup.encode("utf-8"))
        except (etree.ParserError, ValueError):
            return ""
    for hidden in root.xpath(_HIDDEN):
        if hidden.getparent() is not None:
            hidden.drop_tree()
    preformatted = {id(node) for pre in root.iter("pre") for node in pre.iter()}
    for node in root.iter():  # line breaks in the source are spaces, outside <pre>
        if id(node) not in preformatted:
            node.text = _SOURCE_SPACE.sub(" ", node.text) if node.text else node.text
        if node.tail and id(node.getparent()) not in preformatted:
            node.tail = _SOURCE_SPACE.sub(" ", node.tail)
    for row in root.iter("tr"):
        cells = [child for child in row if child.tag in ("td", "th")]
        for cell in cells:
            cell.tail = " " + (cell.tail or "")
        label = " ".join(str(cells[0].text_content()).split()) if len(cells) == 2 else ""
        if label and len(label) <= 40 and not label.endswith((":", "：")):
            cells[0].tail = ": " + (cells[0].tail or "")
    for br in root.iter("br"):
        parent = br.getparent()
        own_text = parent is not None and str(parent.text_content()).strip()
        if parent is not None and parent.tag in _LINE_BLOCKS and br is parent[-1]:
            # A block's last <br> adds no line, unless the block is only that (an empty line).
            br.tail = (_LINE if own_text else _EMPTY) + (br.tail or "")
        else:
            br.tail = "\n" + (br.tail or "")
    for block in root.iter(*_LINE_BLOCKS):
        block.text = _LINE + (block.text or "")
        block.tail = _LINE + (block.tail or "")
    for block in root.iter(*_PARAGRAPHS):
        block.text = _PARAGRAPH + (block.text or "")
        block.tail = _PARAGRAPH + (block.tail or "")
    text = _BREAKS.sub(_line_breaks, str(root.text_content()))
    lines = [line.strip() for line in text.split("\n")]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return "\n".join(kept).strip()


def _line_breaks(run: re.Match[str]) -> str:
    """One run of breaks between two texts, as the page shows it: <br>s count one line
    each, an empty block one more, a paragraph leaves a blank line."""
    marks = run.group(0)
    count = marks.count("\n") + marks.count(_EMPTY)
    if count == 0 and _LINE in marks:
        count = 1
    if _PARAGRAPH in marks:
        count = max(count, 2)
    return "\n" * min(count, 2) if count else " "


_DROP = (
    "script",
    "style",
    "head",
    "title",
    "iframe",
    "object",
    "embed",
    "form",
    "input",
    "button",
    "select",
    "textarea",
    "link",
    "meta",
    "base",
    "svg",
    "math",
    "frame",
    "frameset",
    "applet",
    "noscript",
    "template",
)
_KEEP_TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "div",
        "dl",
        "dt",
        "em",
        "font",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
        "body",
        "html",
    }
)
_KEEP_ATTRIBUTES = frozenset({"href", "src", "alt", "title", "colspan", "rowspan", "align"})
_SAFE_URL = ("http://", "https://", "mailto:", "cid:", "#")


def sanitize_html(markup: str) -> str:
    """The HTML body with only harmless markup: no scripts, styles, frames, forms, event
    handlers or javascript: links; images only by cid: or http(s). Linear like the text."""
    markup = _XML_UNSAFE.sub("", markup[:MAX_HTML_CHARS])
    if not markup.strip():
        return ""
    try:
        root = lxml_html.document_fromstring(markup.encode("utf-8"))
    except (etree.ParserError, ValueError):
        return ""
    for bad in root.xpath("|".join(f"//{tag}" for tag in _DROP) + "|//comment()"):
        if bad.getparent() is not None:
            bad.drop_tree()
    for element in list(root.iter()):
        if not isinstance(element.tag, str):
            continue
        for name in list(element.attrib):
            value = element.attrib[name].strip().lower()
            if name not in _KEEP_ATTRIBUTES or (
                name in ("href", "src") and not value.startswith(_SAFE_URL)
            ):
                del element.attrib[name]
        if element.tag not in _KEEP_TAGS and element.getparent() is not None:
            element.drop_tag()
    body = root.find("body")
    target = body if body is not None else root
    inner = _escape(target.text or "") + "".join(
        lxml_html.tostring(child, encoding="unicode") for child in target
    )
    return inner.strip()


def _escape(text: str) -> str:
    """Text between tags goes out escaped: the parser decoded "&lt;script&gt;" to "<script>"."""
    return html.escape(text, quote=False)


def html_from(markup: str, first_line: str) -> str | None:
    """The part of a (sanitised) HTML body that starts with the text `first_line`: for an
    inline forward, the original message's HTML without the forwarder's note and the
    forward's header block. None when the line cannot be found (the caller keeps it all)."""
    needle = " ".join(first_line.split())[:60]
    if not needle or not markup.strip():
        return None
    try:
        root = lxml_html.document_fromstring(markup.encode("utf-8"))
    except (etree.ParserError, ValueError):
        return None
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        if needle in " ".join((element.text or "").split()):
            _drop_everything_before(element)
            break
        if needle in " ".join((element.tail or "").split()):
            for child in list(element):
                element.remove(child)
            element.text = None
            _drop_everything_before(element)
            break
    else:
        return None
    body = root.find("body")
    target = body if body is not None else root
    inner = _escape(target.text or "") + "".join(
        lxml_html.tostring(child, encoding="unicode") for child in target
    )
    return inner.strip()


def _drop_everything_before(anchor: Any) -> None:
    node = anchor
    while node.getparent() is not None:
        parent = node.getparent()
        for sibling in list(parent):
            if sibling is node:
                break
            parent.remove(sibling)
        parent.text = None
        node = parent
