"""Text of an HTML mail body; the only lxml import.

libxml2 parses hostile markup (unclosed tags, deep nesting, stray angle brackets) in linear
time, where backtracking regexes and some HTML5 parsers go quadratic and stall a worker.
"""

from __future__ import annotations

from lxml import etree
from lxml import html as lxml_html

MAX_HTML_CHARS = 5_000_000  # beyond this an HTML body is cut before parsing

_BLOCKS = ("p", "div", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote")
_HIDDEN = "//script|//style|//head|//title|//comment()"


def html_to_text(markup: str) -> str:
    """Readable text: block elements and <br> become line breaks, scripts and styles go."""
    markup = markup[:MAX_HTML_CHARS].replace("\x00", "")
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
    for br in root.iter("br"):
        br.tail = "\n" + (br.tail or "")
    for cell in root.iter("td", "th"):
        cell.tail = " " + (cell.tail or "")
    for block in root.iter(*_BLOCKS):
        block.text = "\n" + (block.text or "")
        block.tail = "\n" + (block.tail or "")
    lines = [line.strip() for line in str(root.text_content()).splitlines()]
    text: list[str] = []
    for line in lines:
        if line or (text and text[-1]):
            text.append(line)
    return "\n".join(text).strip()
