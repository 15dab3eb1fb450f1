"""Where the SMTP door keeps a message while its DATA arrives (`smtp_session.ArchiveSMTP`):
in memory while small and the door's memory budget allows, else in an anonymous temporary
file under data_dir.
"""

from __future__ import annotations

import asyncio
import ctypes
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import IO

SPOOL_SUBDIR = "smtp-spool"  # under data_dir
_FILE_BUFFER_BYTES = 64 * 1024  # lines arrive one by one: write them in blocks


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, None elsewhere (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def return_memory() -> None:
    """Hand the C heap's free pages back to the system. Python frees a stored message's
    bytes at once, but glibc keeps freed blocks of that size in its heap (its threshold for
    giving large blocks their own mapping grows with the blocks freed), so the process
    would stay at its largest size; malloc_trim releases them."""
    if _TRIM is not None:
        _TRIM(0)


class MemoryBudget:
    """Bytes of messages that all sessions of one door hold in memory together: the texts
    still arriving (`reserve`: past the budget a spool goes to its file) and the messages
    being stored, read back whole (`hold`: waits its turn). Used from the door's event loop
    only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._held = 0  # messages being stored
        self._freed = asyncio.Event()

    def reserve(self, size: int) -> bool:
        """Reserve `size` bytes; False (nothing reserved) if that would pass the limit."""
        if self.in_use + size > self.limit:
            return False
        self.in_use += size
        return True

    def give_back(self, size: int) -> None:
        self.in_use -= size
        self._freed.set()  # the messages waiting in `hold` look again

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        """`size` bytes reserved while the block runs, once they fit in the budget, or once
        no other message is being stored (one larger than the budget then goes alone)."""
        while self.in_use + size > self.limit and self._held:
            self._freed.clear()
            await self._freed.wait()
        self.in_use += size
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            self.give_back(size)


class Spool:
    """One message's text as it arrives: in memory up to `threshold` bytes while `budget`
    allows, then in a temporary file in `directory`. The file has no name where the system
    allows (Linux's O_TMPFILE) and is deleted as soon as it is closed otherwise, so it is
    gone when the spool is closed, the session drops, or the process dies.

    Raises OSError from `write` when the file cannot be made or written (disk full)."""

    def __init__(self, directory: Path, threshold: int, budget: MemoryBudget) -> None:
        self._directory = directory
        self._threshold = threshold
        self._budget = budget
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self.size = 0  # bytes written

    @property
    def spooled(self) -> bool:
        """The bytes are in a file."""
        return self._file is not None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is None:
            if len(self._memory) + len(data) <= self._threshold and self._budget.reserve(len(data)):
                self._memory += data
                return
            self._to_file()
        assert self._file is not None
        self._file.write(data)

    def getvalue(self) -> bytes:
        """All the bytes written (once all are), read back from the file if spooled."""
        if self._file is None:
            return bytes(self._memory)
        self._file.flush()
        self._file.seek(0)
        return self._file.read()

    def close(self) -> None:
        """Give the memory back and delete the file (a refused message being drained writes
        nothing more); safe to call more than once."""
        self._release_memory()
        self._close_file()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _to_file(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        self._file = tempfile.TemporaryFile(  # noqa: SIM115 (closed by `close`)
            dir=self._directory, prefix="data-", buffering=_FILE_BUFFER_BYTES
        )
        self._file.write(self._memory)
        self._release_memory()

    def _release_memory(self) -> None:
        if self._memory:
            self._budget.give_back(len(self._memory))
            self._memory = bytearray()  # a new object: the old buffer is freed, not kept

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
