"""Sender trust at the SMTP door: SPF, DKIM and DMARC checked against a real DNS server on
a loopback port, with mails really signed; our Authentication-Results header on what is
stored, forged ones for our id dropped, DMARC failures under p=reject/quarantine refused."""

from __future__ import annotations

import smtplib
from collections.abc import Generator, Iterator
from email.policy import SMTP

import httpx
import pytest
from sqlalchemy import select

from crm_core.models import InboundItem
from ingest import inbound
from ingest.mailbox.sender_auth import Arrival, Verdict, make_sender_verifier
from ingest.mailbox.smtp_handler import make_archive_handler
from ingest.runtime import Runtime
from ingest.settings import Settings, SettingsError, load_settings
from tests.conftest import serve_smtp
from tests.support.dns_server import DkimKey, TestDns
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    make_mail,
    send,
)

SENDER = "anna@sender.test"
OUR_ID = "archive.test"  # the SMTP hostname, our authserv-id


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return DkimKey.generate()


@pytest.fixture
def dns() -> Iterator[TestDns]:
    """A DNS server of this test's own: it holds the records the test publishes."""
    server = TestDns()
    try:
        yield server
    finally:
        server.stop()


def door(
    runtime: Runtime, dns: TestDns, timeout: float = 2.0
) -> Generator[tuple[str, int], None, None]:
    settings = runtime.settings.model_copy(
        update={"dns_servers": dns.address, "dns_timeout_seconds": timeout}
    )
    verify = make_sender_verifier(settings, OUR_ID)
    assert verify is not None
    handler = make_archive_handler(runtime.commits, runtime.pipeline.enqueue, OUR_ID, verify)
    return serve_smtp(runtime, handler)


@pytest.fixture
def smtp(runtime: Runtime, dns: TestDns) -> Iterator[tuple[str, int]]:
    yield from door(runtime, dns)


@pytest.fixture
def address(api: httpx.Client) -> str:
    user = create_user(api, "anna@example.com", "Anna Sales")
    card = create_card(api, int(user["id"]))
    return archive_address(api, int(card["id"]))


def mail(address: str, sender: str = SENDER, body: str = "Hello, here is the quote.") -> bytes:
    return make_mail(f"Anna <{sender}>", address, body=body).as_bytes(policy=SMTP)


def stored(runtime: Runtime) -> list[InboundItem]:
    with runtime.sessions() as session:
        return list(session.scalars(select(InboundItem).order_by(InboundItem.id)))


def results_headers(raw: bytes) -> list[str]:
    """The Authentication-Results headers of `raw`, unfolded, in order."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    fields = head.replace("\r\n\t", " ").replace("\r\n ", " ").split("\r\n")
    return [f for f in fields if f.lower().startswith("authentication-results:")]


def our_results(runtime: Runtime) -> str:
    [item] = stored(runtime)
    headers = results_headers(item.raw)
    assert headers[0].startswith(f"Authentication-Results: {OUR_ID};"), headers
    assert item.raw.startswith(b"Authentication-Results: ")  # prepended, first of all
    return headers[0]


def test_spf_pass_is_recorded_and_the_dedupe_key_is_that_of_the_bytes_received(
    runtime: Runtime, dns: TestDns, smtp: tuple[str, int], address: str
) -> None:
    dns.txt("sender.test", "v=spf1 ip4:127.0.0.1 -all")
    raw = mail(address)
    send(smtp, raw, address, SENDER)
    header = our_results(runtime)
    assert f"spf=pass smtp.mailfrom={SENDER}" in header
    assert "dkim=none" in header
    assert "dmarc=none header.from=sender.test" in header
    [item] = stored(runtime)
    # The same bytes fetched by IMAP have the same key: one item, whichever door came first
    assert item.dedupe_key == inbound.email_key(address, raw)
    assert item.raw.endswith(raw)


@pytest.mark.parametrize(
    ("record", "expected"),
    [("v=spf1 ip4:192.0.2.1 -all", "spf=fail"), (None, "spf=none")],
    ids=["fail", "none"],
)
def test_spf_fail_and_none_are_recorded_and_accepted_without_dmarc(
    runtime: Runtime,
    dns: TestDns,
    smtp: tuple[str, int],
    address: str,
    record: str | None,
    expected: str,
) -> None:
    if record:
        dns.txt("sender.test", record)
    send(smtp, mail(address), address, SENDER)
    header = our_results(runtime)
    assert f"{expected} smtp.mailfrom={SENDER}" in header
    assert "dmarc=none" in header


def test_dkim_pass_and_dmarc_pass_by_dkim_alignment(
    runtime: Runtime, dns: TestDns, smtp: tuple[str, int], address: str, key: DkimKey
) -> None:
    # Given a domain that rejects what fails DMARC, and a mail signed by it but relayed by a
    # server its SPF does not list (a forward by redirection: the envelope is the relay's)
    dns.txt("sel._domainkey.sender.test", key.record)
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    dns.txt("relay.test", "v=spf1 -all")
    send(smtp, key.sign(mail(address), "sender.test"), address, "bounces@relay.test")
    # Then the DKIM signature is what makes it pass
    header = our_results(runtime)
    assert "spf=fail smtp.mailfrom=bounces@relay.test" in header
    assert "dkim=pass header.d=sender.test header.s=sel" in header
    assert "dmarc=pass (p=reject) header.from=sender.test" in header


def test_dkim_fail_when_the_body_is_altered_after_signing(
    runtime: Runtime, dns: TestDns, smtp: tuple[str, int], address: str, key: DkimKey
) -> None:
    dns.txt("sel._domainkey.sender.test", key.record)
    signed = key.sign(mail(address), "sender.test")
    altered = signed.replace(b"here is the quote", b"here is the invoice")
    assert altered != signed
    send(smtp, altered, address, SENDER)
    header = our_results(runtime)
    assert "dkim=fail (body hash mismatch) header.d=sender.test header.s=sel" in header
    assert "dmarc=none" in header  # no DMARC record: accepted


def test_dmarc_pass_by_relaxed_spf_alignment(
    runtime: Runtime, dns: TestDns, smtp: tuple[str, int], address: str
) -> None:
    # The envelope is a subdomain of the From domain (relaxed alignment: same organization)
    dns.txt("mail.sender.test", "v=spf1 ip4:127.0.0.1 -all")
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    send(smtp, mail(address), address, "bounces@mail.sender.test")
    header = our_results(runtime)
    assert "spf=pass smtp.mailfrom=bounces@mail.sender.test" in header
    assert "dmarc=pass (p=reject) header.from=sender.test" in header


def test_strict_spf_alignment_asked_by_the_domain_is_applied(
    runtime: Runtime, dns: TestDns, smtp: tuple[str, int], address: str
) -> None:
    dns.txt("mail.sender.test", "v=spf1 ip4:127.0.0.1 -all")
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=reject; aspf=s")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(smtp, mail(address), address, "bounces@mail.sender.test")
    assert refused.value.smtp_code == 550
    assert stored(runtime) == []


@pytest.mark.parametrize("policy", ["reject", "quarantine"])
def test_dmarc_fail_under_reject_or_quarantine_is_refused_with_550_and_not_stored(
    runtime: Runtime, dns: TestDns, smtp: tuple[str, int], address: str, policy: str
) -> None:
    # Given a From domain with a DMARC policy, and a mail from a server its SPF does not list
    dns.txt("sender.test", "v=spf1 ip4:192.0.2.1 -all")
    dns.txt("_dmarc.sender.test", f"v=DMARC1; p={policy}")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(smtp, mail(address), address, SENDER)
    # Then the DATA is refused, saying why, and nothing is kept
    assert refused.value.smtp_code == 550
    error = refused.value.smtp_error
    text = error.decode() if isinstance(error, bytes) else error
    assert text.startswith("5.7.1 The From domain sender.test fails DMARC")
    assert f"p={policy}" in text
    assert stored(runtime) == []


def test_dmarc_fail_under_p_none_is_accepted_and_recorded(
    runtime: Runtime, dns: TestDns, smtp: tuple[str, int], address: str
) -> None:
    # p=none: the domain asks receivers to report only, not to act
    dns.txt("sender.test", "v=spf1 ip4:192.0.2.1 -all")
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=none")
    send(smtp, mail(address), address, SENDER)
    assert "dmarc=fail (p=none) header.from=sender.test" in our_results(runtime)


def test_a_subdomain_follows_the_organizational_domain_sp(
    runtime: Runtime, dns: TestDns, smtp: tuple[str, int], address: str
) -> None:
    # No record at shop.sender.test: the organizational domain's, with its sp=, applies
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=none; sp=reject")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(smtp, mail(address, sender="anna@shop.sender.test"), address, SENDER)
    assert refused.value.smtp_code == 550
    assert b"p=reject" in refused.value.smtp_error


def test_forged_results_for_our_id_are_dropped_and_others_kept(
    runtime: Runtime, dns: TestDns, smtp: tuple[str, int], address: str
) -> None:
    forged = (
        f"Authentication-Results: {OUR_ID}; dkim=pass header.d=bank.test\r\n"
        "Authentication-Results: (we checked) ARCHIVE.TEST 1;\r\n"
        "\tdmarc=pass header.from=bank.test\r\n"
        "Authentication-Results: mx.other.test; spf=pass smtp.mailfrom=x@other.test\r\n"
    ).encode()
    send(smtp, forged + mail(address), address, SENDER)
    [item] = stored(runtime)
    headers = results_headers(item.raw)
    assert len(headers) == 2, headers
    assert headers[0].startswith(f"Authentication-Results: {OUR_ID}; spf=none")
    assert headers[1] == (
        "Authentication-Results: mx.other.test; spf=pass smtp.mailfrom=x@other.test"
    )
    assert b"bank.test" not in item.raw


def test_a_silent_unrelated_domain_does_not_turn_a_dmarc_fail_into_a_pass(
    runtime: Runtime, dns: TestDns, address: str
) -> None:
    # The From domain refuses what fails; the envelope names a domain whose DNS never
    # answers, and a DKIM signature of that domain comes too (an attacker's choices).
    dns.txt("sender.test", "v=spf1 ip4:192.0.2.1 -all")
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    dns.silence("blackhole.test")
    signed = DkimKey.generate().sign(mail(address), "blackhole.test")
    server = door(runtime, dns)
    smtp = next(server)
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(smtp, signed, address, "x@blackhole.test")
    finally:
        server.close()
    assert refused.value.smtp_code == 550
    assert stored(runtime) == []


def test_an_aligned_check_dns_cannot_answer_under_p_reject_is_deferred_with_451(
    runtime: Runtime, dns: TestDns, address: str
) -> None:
    # sender.test publishes p=reject, but its SPF record's own DNS does not answer now
    dns.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    dns.txt("sender.test", "v=spf1 include:spf.slow.sender.test -all")
    dns.silence("slow.sender.test")
    server = door(runtime, dns)
    smtp = next(server)
    try:
        with pytest.raises(smtplib.SMTPDataError) as deferred:
            send(smtp, mail(address), address, SENDER)
    finally:
        server.close()
    assert deferred.value.smtp_code == 451
    assert stored(runtime) == []


def test_a_folded_first_line_cannot_extend_our_header(
    runtime: Runtime, dns: TestDns, smtp: tuple[str, int], address: str
) -> None:
    injected = b"\t; dkim=pass header.d=bank.test; dmarc=pass header.from=bank.test\r\n"
    send(smtp, injected + mail(address), address, SENDER)
    [item] = stored(runtime)
    assert b"bank.test" not in item.raw
    assert results_headers(item.raw)[0].startswith(f"Authentication-Results: {OUR_ID}; spf=")


def test_forged_results_for_our_id_are_dropped_also_when_nothing_checks(
    runtime: Runtime, address: str
) -> None:
    handler = make_archive_handler(runtime.commits, runtime.pipeline.enqueue, OUR_ID)
    server = serve_smtp(runtime, handler)
    smtp = next(server)
    forged = f"Authentication-Results: {OUR_ID}; dmarc=pass header.from=bank.test\r\n"
    try:
        send(smtp, forged.encode() + mail(address), address, SENDER)
    finally:
        server.close()
    [item] = stored(runtime)
    assert b"bank.test" not in item.raw and results_headers(item.raw) == []


def test_dns_down_gives_temperror_and_the_mail_is_accepted(runtime: Runtime, address: str) -> None:
    # A DNS server that stopped: every lookup times out (a short timeout for the test)
    dead = TestDns()
    dead.stop()
    server = door(runtime, dead, timeout=0.3)
    smtp = next(server)
    try:
        send(smtp, mail(address), address, SENDER)
    finally:
        server.close()
    header = our_results(runtime)
    assert "spf=temperror" in header
    assert "dmarc=temperror" in header


def test_a_failing_check_loses_no_mail(runtime: Runtime, address: str) -> None:
    # A check that breaks (a bug, not DNS): the mail is stored unchecked, not refused
    def broken(arrival: Arrival) -> Verdict:
        raise RuntimeError("bug")

    handler = make_archive_handler(runtime.commits, runtime.pipeline.enqueue, OUR_ID, broken)
    server = serve_smtp(runtime, handler)
    smtp = next(server)
    try:
        raw = mail(address)
        send(smtp, raw, address, SENDER)
    finally:
        server.close()
    [item] = stored(runtime)
    # The bytes received, unchecked: only our Received line (RFC 5321 4.4) is above them
    assert item.raw.endswith(raw) and item.raw[: -len(raw)].startswith(b"Received: from ")


def test_dns_settings_are_checked_and_the_check_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("CRM_DNS_SERVERS", "127.0.0.1")
    with pytest.raises(SettingsError, match=r"CRM_DNS_SERVERS: .*host:port"):
        load_settings()
    monkeypatch.setenv("CRM_DNS_SERVERS", "127.0.0.1:5353, [::1]:53")
    assert load_settings().dns_servers == "127.0.0.1:5353, [::1]:53"
    assert make_sender_verifier(settings, OUR_ID) is not None
    off = settings.model_copy(update={"smtp_verify_senders": False})
    assert make_sender_verifier(off, OUR_ID) is None


def test_the_suites_smtp_door_checks_senders_against_the_test_dns(
    runtime: Runtime, smtp_server: tuple[str, int], address: str
) -> None:
    # The shared fixture's door asks the suite's DNS (which knows no name), not the machine's
    send(smtp_server, mail(address), address, SENDER)
    header = our_results(runtime)
    assert "spf=none" in header
    assert "dmarc=none" in header
