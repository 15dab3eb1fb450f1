"""The parts of a forwarded original, for `forwarding`: its body (quoting and indentation
removed), its addresses as mail clients write them, a quote header's sender name.
"""

# ruff: noqa: RUF001 (the punctuation of the languages users write in: fullwidth comma...)
from __future__ import annotations

import re
from collections.abc import Sequence
from email.utils import getaddresses

from ingest.mailbox.header_block import EMAIL, unquote

Address = tuple[str, str]


def name_at_end(text: str) -> tuple[str, str]:
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


def body_text(lines: Sequence[str]) -> str:
    """The original's body: quoting and the indentation of quoted replies removed."""
    while lines and not lines[0].strip():
        lines = lines[1:]
    content = [line for line in lines if line.strip()]
    if content and all(line.lstrip().startswith(">") for line in content):
        lines = [unquote(line) for line in lines]
    else:
        lines = [re.sub(r"^>\s?", "", line) if line.startswith(">") else line for line in lines]
    content = [line for line in lines if line.strip()]
    if content:
        indent = min(len(line) - len(line.lstrip(" \t")) for line in content)
        lines = [line[indent:] for line in lines]
    return "\n".join(line.rstrip() for line in lines).strip()


def parse_addresses(value: str) -> list[Address]:
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
        found = [("", address) for address in EMAIL.findall(value)]
    return found
