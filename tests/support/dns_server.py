"""Test-only DNS: a real UDP server on a loopback port serving the records a test sets
(dnslib), and real DKIM keys and signatures (cryptography, dkimpy's sign) for its mails.
Names nobody set are NXDOMAIN, so no test ever asks the machine's resolver."""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass

import dkim
import dnslib
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer


class _Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.silent: set[str] = set()
        self.lock = threading.Lock()

    def resolve(self, request: dnslib.DNSRecord, handler: DNSHandler) -> dnslib.DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = dnslib.QTYPE[request.q.qtype]
        with self.lock:
            if any(name == d or name.endswith("." + d) for d in self.silent):
                raise TimeoutError(name)  # dnslib then sends nothing: the asker times out
            known = any(key[0] == name for key in self.records)
            values = list(self.records.get((name, qtype), []))
        if not known:
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        for value in values:
            if qtype == "TXT":
                chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
                data: dnslib.RD = dnslib.TXT(chunks)
            else:
                data = dnslib.A(value) if qtype == "A" else dnslib.AAAA(value)
            reply.add_answer(dnslib.RR(name, getattr(dnslib.QTYPE, qtype), rdata=data, ttl=0))
        return reply


class TestDns:
    """A DNS server on 127.0.0.1 (UDP); `address` is the CRM_DNS_SERVERS value."""

    __test__ = False  # not a test class for pytest

    def __init__(self) -> None:
        self._zone = _Zone()
        quiet = DNSLogger(prefix=False, logf=lambda _line: None)
        self._server = DNSServer(self._zone, address="127.0.0.1", port=0, logger=quiet)
        self.port: int = self._server.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self._server.start_thread()

    def txt(self, name: str, *values: str) -> None:
        self._set(name, "TXT", values)

    def a(self, name: str, *addresses: str) -> None:
        self._set(name, "A", addresses)

    def _set(self, name: str, qtype: str, values: tuple[str, ...]) -> None:
        with self._zone.lock:
            self._zone.records[(name.rstrip(".").lower(), qtype)] = list(values)

    def silence(self, domain: str) -> None:
        """Questions about `domain` and its subdomains get no answer at all."""
        with self._zone.lock:
            self._zone.silent.add(domain.rstrip(".").lower())

    def clear(self) -> None:
        with self._zone.lock:
            self._zone.records.clear()

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()


@dataclass(frozen=True)
class DkimKey:
    """An RSA key pair: the private key signs, `record` is the TXT to publish."""

    private_pem: bytes
    record: str

    @classmethod
    def generate(cls) -> DkimKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(private_pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(public_der).decode())

    def sign(self, raw: bytes, domain: str, selector: str = "sel") -> bytes:
        """`raw` with a DKIM-Signature header of `domain` (relaxed/relaxed)."""
        signature: bytes = dkim.sign(
            raw,
            selector.encode(),
            domain.encode(),
            self.private_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        )
        return signature + raw
