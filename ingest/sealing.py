"""Sealed secrets of the webhook sources: encrypted at rest with Fernet (AES + HMAC).

A signature check needs the shared secret itself, so it cannot be stored as a hash; it is
stored sealed with the deployment's key (`CRM_SECRET_KEY`, or a key file made once in the
data directory). The only module importing `cryptography`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


class SealingError(Exception):
    """The key is malformed, or a sealed value was made with another key."""


class Sealer:
    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise SealingError(
                "the secret key must be 32 bytes in urlsafe base64 (Fernet.generate_key())"
            ) from exc

    def seal(self, values: dict[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(values).encode()).decode()

    def unseal(self, sealed: str) -> dict[str, str]:
        try:
            return dict(json.loads(self._fernet.decrypt(sealed.encode())))
        except InvalidToken as exc:
            raise SealingError("sealed with another key (was CRM_SECRET_KEY changed?)") from exc


def new_key() -> str:
    return Fernet.generate_key().decode()


def key_file(path: Path) -> str:
    """The key kept in `path`, made (readable by its owner only) on first use. Processes
    started together on one data directory agree on one key: it is written whole to a
    file of its own, then linked to `path`, which appears complete or not at all (a reader
    never sees it half-written); the first link wins."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, written = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "w") as out:  # mkstemp: owner-only (0600)
                out.write(new_key())
            with contextlib.suppress(FileExistsError):  # another process of ours won
                os.link(written, path)
        finally:
            os.unlink(written)
    return path.read_text().strip()
