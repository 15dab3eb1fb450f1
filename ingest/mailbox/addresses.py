"""Per-card archive addresses: random tokens in the local part, only their hash stored.

SPEC: at least 128 bits from a CSPRNG, lower-case base32 (relays may change case), and
`archive+<token>@company.com` for catch-all mailboxes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

TOKEN_BYTES = 20  # 160 bits -> 32 base32 characters, no padding
_TOKEN_RE = re.compile(r"^[a-z2-7]{32}$")


def new_archive_token() -> str:
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii").lower()


def hash_archive_token(token: str) -> str:
    """What the database keeps: a leaked table gives no working address."""
    return hashlib.sha256(token.lower().encode("ascii")).hexdigest()


def encode_archive_address(token: str, domain: str) -> str:
    return f"{token}@{domain}"


def decode_archive_address(address: str) -> str | None:
    """The token in `address` (`<token>@d` or `<anything>+<token>@d`), or None if there is none."""
    address = address.strip().strip("<>")
    local, at, _domain = address.rpartition("@")
    if not at:
        return None
    token = local.rsplit("+", 1)[-1].lower()
    return token if _TOKEN_RE.fullmatch(token) else None
