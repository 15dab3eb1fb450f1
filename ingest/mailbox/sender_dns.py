"""DNS for the sender checks at the SMTP door (SPF, DKIM, DMARC): one resolver, through the
configured servers with a timeout per lookup; the only dnspython import.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

log = logging.getLogger(__name__)


class DnsTempError(Exception):
    """A DNS lookup timed out or no server answered: results are `temperror`."""


class Resolver:
    """DNS through the configured servers ("host:port,..."; "" = the system's) with a
    timeout per lookup; "no such record" is an empty answer, a failure is DnsTempError."""

    def __init__(self, servers: str, timeout: float) -> None:
        self.timeout = timeout
        self._problem = ""
        listed = [part.strip() for part in servers.split(",") if part.strip()]
        try:
            self._resolver = dns.resolver.Resolver(configure=not listed)
        except dns.resolver.NoResolverConfiguration as exc:  # no /etc/resolv.conf
            self._resolver = dns.resolver.Resolver(configure=False)
            self._problem = f"no DNS configuration ({exc})"
        if listed:
            nameservers: list[str | dns.nameserver.Nameserver] = []
            for server in listed:
                host, _, port = server.rpartition(":")
                nameservers.append(dns.nameserver.Do53Nameserver(host.strip("[]"), int(port)))
            self._resolver.nameservers = nameservers
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._resolver.retry_servfail = False

    def query(
        self, name: str, rdtype: str, timeout: float | None = None, deadline: float = 0
    ) -> list[Any]:
        if self._problem:
            raise DnsTempError(self._problem)
        lifetime = self.timeout if timeout is None else max(0.1, min(timeout, self.timeout))
        if deadline:
            lifetime = min(lifetime, deadline - time.monotonic())
            if lifetime <= 0:
                raise DnsTempError(f"DNS {rdtype} {name}: time budget spent")
        try:
            answer = self._resolver.resolve(
                name, rdtype, lifetime=lifetime, search=False, raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsTempError(f"DNS {rdtype} {name}: {type(exc).__name__}") from exc
        except dns.exception.DNSException as exc:  # a bad name, a malformed answer
            log.info("DNS %s %s: %r", rdtype, name, exc)
            return []
        return list(answer)

    def txt(self, name: str, deadline: float = 0) -> list[bytes]:
        """Each TXT record of `name`, its strings joined (RFC 7208 section 3.3)."""
        return [b"".join(r.strings) for r in self.query(name, "TXT", deadline=deadline)]
