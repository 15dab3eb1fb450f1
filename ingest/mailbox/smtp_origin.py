"""Who sent a mail at the SMTP door: the client itself, or behind a trusted relay (e.g.
Postfix) the relay's own client, as its XFORWARD gives it or its topmost Received line names it.
See http://www.postfix.org/XFORWARD_README.html (offered to trusted relays only).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from dataclasses import dataclass

from aiosmtpd.smtp import Envelope, Session

from ingest.mailbox.smtp_limits import client_key, peer_host

log = logging.getLogger(__name__)

# XFORWARD: the attributes we take, as offered in our EHLO answer.
XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
XFORWARD_EHLO = "250-XFORWARD " + " ".join(XFORWARD_ATTRIBUTES)
_XFORWARD_UNAVAILABLE = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
_XFORWARD_MAX_LENGTH = {  # Postfix's own limits (XFORWARD_README)
    "NAME": 255,
    "ADDR": 64,
    "PORT": 5,
    "PROTO": 64,
    "HELO": 255,
    "IDENT": 64,
    "SOURCE": 6,
}


def xtext_decode(value: str) -> str:
    """RFC 3461 section 4 xtext: "+" and two upper-case hex digits stand for one octet.

    Raises ValueError on a character xtext does not allow or a bad "+" escape."""
    out = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char == "+":
            digits = value[index + 1 : index + 3]
            if len(digits) != 2 or any(d not in "0123456789ABCDEFabcdef" for d in digits):
                raise ValueError(f"bad xtext escape {value[index : index + 3]!r}")
            out.append(int(digits, 16))
            index += 3
            continue
        if not ("!" <= char <= "~") or char == "=":
            raise ValueError(f"character {char!r} not allowed in xtext")
        out.append(ord(char))
        index += 1
    return out.decode("utf-8", errors="replace")


def parse_xforward(arg: str) -> dict[str, str | None]:
    """The attributes of one XFORWARD command ("NAME=mx.example ADDR=192.0.2.1 ..."):
    upper-case names, xtext-decoded values, None for [UNAVAILABLE] or [TEMPUNAVAIL].

    Raises ValueError naming what is wrong (unknown attribute, bad value, none given)."""
    attributes: dict[str, str | None] = {}
    for part in arg.split():
        name, sep, raw_value = part.partition("=")
        name = name.upper()
        if not sep or name not in XFORWARD_ATTRIBUTES:
            raise ValueError(f"bad XFORWARD attribute name: {name or part}")
        if raw_value.upper() in _XFORWARD_UNAVAILABLE:
            attributes[name] = None
            continue
        value = xtext_decode(raw_value)
        if len(value) > _XFORWARD_MAX_LENGTH[name] or not value.isprintable():
            raise ValueError(f"bad XFORWARD {name} value")
        attributes[name] = value
    if not attributes:
        raise ValueError("XFORWARD needs attribute=value")
    return attributes


def forwarded_ip(value: str | None) -> str | None:
    """XFORWARD's ADDR as an IP address ("IPV6:" prefix dropped), None when it is not one."""
    if not value:
        return None
    if value[:5].upper() == "IPV6:":
        value = value[5:]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class DoorSession(Session):
    """aiosmtpd's session, knowing whether the connection comes from a trusted relay."""

    def __init__(self, loop: asyncio.AbstractEventLoop, relay: bool) -> None:
        super().__init__(loop)
        self.relay = relay


class DoorEnvelope(Envelope):
    """aiosmtpd's envelope with the XFORWARD attributes of its transaction: sent before MAIL,
    they end with it (DATA done, RSET or a new EHLO), as with Postfix's own smtpd."""

    def __init__(self) -> None:
        super().__init__()
        self.xforward: dict[str, str | None] = {}


@dataclass(frozen=True)
class Origin:
    """Who sent a mail: the client itself, or behind a trusted relay the relay's client."""

    address: str  # IP address ("" if the relay did not know it)
    helo: str
    relay: str = ""  # the trusted relay's address, "" for a direct client
    relay_helo: str = ""
    via: str = "direct"  # direct, xforward, received (the relay's Received line) or relay


def _from_relay(session: Session) -> bool:
    return isinstance(session, DoorSession) and session.relay


def _xforward_of(envelope: Envelope) -> dict[str, str | None]:
    return envelope.xforward if isinstance(envelope, DoorEnvelope) else {}


def brake_key(session: Session, envelope: Envelope) -> str | None:
    """Whom the unknown-address brake counts: the client, or behind a trusted relay the
    client XFORWARD names; None (not counted) for relayed mail without a client address."""
    if not _from_relay(session):
        return client_key(session.peer)
    address = forwarded_ip(_xforward_of(envelope).get("ADDR"))
    return client_key(address) if address else None


def origin_of(session: Session, envelope: Envelope, raw: bytes) -> Origin:
    """The mail's client: XFORWARD's ADDR and HELO for a trusted relay, else its topmost
    Received line's, else the relay itself (logged: SPF then judges the relay)."""
    peer, helo = peer_host(session.peer), session.host_name or ""
    if not _from_relay(session):
        return Origin(peer, helo)
    forwarded = _xforward_of(envelope)
    if "ADDR" in forwarded:
        address = forwarded_ip(forwarded["ADDR"]) or ""
        return Origin(address, forwarded.get("HELO") or "", peer, helo, "xforward")
    named = received_client(raw)
    if named is not None:
        return Origin(named[0], named[1], peer, helo, "received")
    log.warning(
        "mail from trusted relay %s names no client (no XFORWARD, no Received line); "
        "checking the relay itself",
        peer,
    )
    return Origin(peer, helo, peer, helo, "relay")


# The from-clause of a Received line (RFC 5321 section 4.4): "from HELO (NAME [ADDR])" as
# Postfix and Sendmail write it, "from NAME ([ADDR] helo=HELO)" as Exim does.
_RECEIVED_FROM = re.compile(r"^\s*from\s+(?P<helo>\S+)(?P<rest>.*?)(?:\sby\s|\swith\s|;|$)", re.I)
_BRACKETED_IP = re.compile(r"\[(?:IPv6:)?(?P<ip>[0-9A-Fa-f:.]+)\]", re.I)
_EXIM_HELO = re.compile(r"\bhelo=(?P<helo>[^\s()]+)", re.I)


def received_client(raw: bytes) -> tuple[str, str] | None:
    """The client address and HELO named by the message's topmost Received line (the one a
    relay in front of us wrote for its own client), or None without a usable one."""
    lines = raw.split(b"\n")
    field: list[bytes] = []
    for index, line in enumerate(lines):
        line = line.rstrip(b"\r")
        if not line:
            break  # end of the header
        if line[:9].lower() != b"received:":
            continue
        field = [line[9:]]
        for more in lines[index + 1 :]:
            if more[:1] not in (b" ", b"\t"):
                break
            field.append(more.rstrip(b"\r"))
        break
    if not field:
        return None
    text = " ".join(b" ".join(field).decode("utf-8", errors="replace").split())
    match = _RECEIVED_FROM.match(text)
    if match is None:
        return None
    rest = match.group("rest")
    address = _BRACKETED_IP.search(rest)
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address.group("ip"))
    except ValueError:
        return None
    exim_helo = _EXIM_HELO.search(rest)
    helo = exim_helo.group("helo") if exim_helo else match.group("helo")
    return str(ip), helo
