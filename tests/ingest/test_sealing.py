"""The key file of a data directory (`ingest.sealing.key_file`): processes started together
on a fresh directory (`crm-ingest smtp`, `sweeper` and two `worker`s, as a deployment or the
end-to-end benchmark starts them) must agree on one whole key."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from ingest.sealing import Sealer, key_file


def started_together(path: Path, starters: int) -> list[str]:
    """The key each of `starters` threads reads from `path`, all starting at once."""
    start = threading.Barrier(starters)
    keys: list[str] = []

    def read() -> None:
        start.wait()
        keys.append(key_file(path))

    threads = [threading.Thread(target=read) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return keys


def test_processes_starting_together_on_a_fresh_directory_get_one_whole_key(
    tmp_path: Path,
) -> None:
    for attempt in range(30):
        path = tmp_path / f"run-{attempt}" / "secret.key"
        keys = started_together(path, 8)
        assert len(keys) == 8 and len(set(keys)) == 1, keys  # one key, never half of one
        Sealer(keys[0])  # a valid Fernet key
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no leftovers
