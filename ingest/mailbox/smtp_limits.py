"""The SMTP door's limits: the `smtp_*` settings (`DoorLimits`), whom a limit counts
(`client_key`), the unknown-address brake (`HarvestGuard`) and the connection caps.
"""

from __future__ import annotations

import collections
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.mailbox.spool import SPOOL_SUBDIR
from ingest.settings import IPNetwork, Settings

Clock = Callable[[], float]  # seconds, monotonic


@dataclass(frozen=True)
class DoorLimits:
    """The door's limits; see the `smtp_*` settings for what each does."""

    max_command_bytes: int
    max_line_bytes: int
    max_recipients: int
    max_connections: int
    max_connections_per_ip: int
    idle_seconds: float
    unknown_rcpt_limit: int
    unknown_rcpt_window_seconds: float
    trusted_relays: tuple[IPNetwork, ...] = ()
    session_max_seconds: float = 1800.0
    max_junk_commands: int = 50
    spool_threshold_bytes: int = 256 * 1024
    max_memory_bytes: int = 64 * 1024 * 1024
    spool_dir: Path = Path("var") / SPOOL_SUBDIR

    @classmethod
    def from_settings(cls, s: Settings) -> DoorLimits:
        return cls(
            max_command_bytes=s.smtp_max_command_bytes,
            max_line_bytes=s.smtp_max_line_bytes,
            max_recipients=s.smtp_max_recipients,
            max_connections=s.smtp_max_connections,
            max_connections_per_ip=s.smtp_max_connections_per_ip,
            idle_seconds=s.smtp_idle_seconds,
            unknown_rcpt_limit=s.smtp_unknown_rcpt_limit,
            unknown_rcpt_window_seconds=s.smtp_unknown_rcpt_window_seconds,
            trusted_relays=s.trusted_relay_networks,
            session_max_seconds=s.smtp_session_max_seconds,
            max_junk_commands=s.smtp_max_junk_commands,
            spool_threshold_bytes=s.smtp_spool_threshold_bytes,
            max_memory_bytes=s.smtp_max_memory_bytes,
            spool_dir=s.data_dir / SPOOL_SUBDIR,
        )


DEFAULT_LIMITS = DoorLimits.from_settings(Settings.model_construct())  # no environment read


def peer_host(peer: Any) -> str:
    """The host of aiosmtpd's `peer` (an address tuple, or already a string)."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


def client_key(peer: Any) -> str:
    """Who a limit counts: the IP address, or the /64 of an IPv6 one (one host's usual share)."""
    host = peer_host(peer)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def in_networks(host: str, networks: tuple[IPNetwork, ...]) -> bool:
    """`host` is an IP address (IPv4-mapped ones as IPv4) within one of `networks`."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


class HarvestGuard:
    """Unknown-address attempts per client over a sliding window (directory harvesting).

    Kept in this process's memory: each SMTP process counts on its own and a restart
    forgets. A brake on guessing, not an account; a client at the limit is refused at once.
    """

    MAX_CLIENTS = 10_000  # clients tracked at once; beyond, the oldest are forgotten

    def __init__(self, limit: int, window_seconds: float, clock: Clock = time.monotonic) -> None:
        self._limit = limit
        self._window = window_seconds
        self._clock = clock
        self._misses: dict[str, collections.deque[float]] = {}

    def blocked(self, client: str) -> bool:
        """The client reached the limit within the window (0 = never)."""
        misses = self._misses.get(client)
        if not self._limit or misses is None:
            return False
        self._expire(misses, self._clock())
        if not misses:
            del self._misses[client]
        return len(misses) >= self._limit

    def record_unknown(self, client: str) -> None:
        if not self._limit:
            return
        now = self._clock()
        if client not in self._misses and len(self._misses) >= self.MAX_CLIENTS:
            for key, misses in list(self._misses.items()):
                self._expire(misses, now)
                if not misses:
                    del self._misses[key]
            while len(self._misses) >= self.MAX_CLIENTS:
                del self._misses[next(iter(self._misses))]
        self._misses.setdefault(client, collections.deque()).append(now)

    def _expire(self, misses: collections.deque[float], now: float) -> None:
        while misses and misses[0] <= now - self._window:
            misses.popleft()


class ConnectionCount:
    """Open sessions, in all and per client; used from the server's event loop only."""

    def __init__(self, total: int, per_client: int) -> None:
        self._total_cap = total
        self._client_cap = per_client
        self._open: collections.Counter[str] = collections.Counter()

    def admit(self, client: str) -> bool:
        if self._open.total() >= self._total_cap:
            return False
        if self._client_cap and self._open[client] >= self._client_cap:
            return False
        self._open[client] += 1
        return True

    def release(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]
