"""STARTTLS at the SMTP door over real sockets: commands pipelined with STARTTLS discarded, the
configured certificate, mail refused before STARTTLS when TLS is required, and unusable TLS
files refused at start, naming the variable.
"""

from __future__ import annotations

import smtplib
import ssl
import subprocess
from email.policy import SMTP
from pathlib import Path

import pytest

from ingest.mailbox.smtp_server import load_tls_context
from ingest.runtime import Runtime
from ingest.settings import SettingsError
from tests.support.cli import crm_ingest, free_port
from tests.support.helpers import make_mail
from tests.support.smtp import SENDER, door, raw_session, stored_raws
from tests.support.tls_certs import client_context, self_signed_cert

# 2. STARTTLS and TLS -----------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path)


def test_commands_pipelined_with_starttls_are_discarded(
    runtime: Runtime, address: str, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    with (
        door(runtime, smtp_tls_cert_file=str(cert), smtp_tls_key_file=str(key)) as server,
        raw_session(server) as client,
    ):
        assert client.reply().startswith(b"220")
        assert b"STARTTLS" in client.command(b"EHLO client.example")
        # Given commands sent in clear in the same write as STARTTLS (CVE-2024-34083)
        client.send(b"STARTTLS\r\nEHLO evil.example\r\nMAIL FROM:<evil@evil.example>\r\n")
        assert client.reply().startswith(b"220")
        client.start_tls(client_context(cert))
        # Then after the handshake the server acted on neither: no EHLO, no MAIL
        assert client.command(f"RCPT TO:<{address}>".encode()).startswith(b"503")
        assert client.command(b"EHLO client.example").startswith(b"250")
        assert client.command(f"RCPT TO:<{address}>".encode()).startswith(b"503")
        assert client.command(f"MAIL FROM:<{SENDER}>".encode()).startswith(b"250")
        assert client.command(f"RCPT TO:<{address}>".encode()).startswith(b"250")


def test_starttls_with_the_configured_certificate(
    runtime: Runtime, smtp_server: tuple[str, int], address: str, certificate: tuple[Path, Path]
) -> None:
    # Without a certificate, STARTTLS is not offered
    with smtplib.SMTP(*smtp_server, timeout=30) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
    cert, key = certificate
    with (
        door(runtime, smtp_tls_cert_file=str(cert), smtp_tls_key_file=str(key)) as server,
        smtplib.SMTP(*server, timeout=30) as client,
    ):
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.starttls(context=client_context(cert))[0] == 220
        assert client.sock is not None and isinstance(client.sock, ssl.SSLSocket)
        client.ehlo()
        assert not client.has_extn("starttls")
        client.sendmail(SENDER, [address], make_mail(SENDER, address).as_bytes(policy=SMTP))
    assert len(stored_raws(runtime)) == 1


def test_require_tls_refuses_mail_before_starttls(
    runtime: Runtime, address: str, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    with (
        door(
            runtime,
            smtp_tls_cert_file=str(cert),
            smtp_tls_key_file=str(key),
            smtp_require_tls=True,
        ) as server,
        smtplib.SMTP(*server, timeout=30) as client,
    ):
        client.ehlo()
        assert client.mail(SENDER) == (530, b"5.7.0 Must issue a STARTTLS command first")
        client.starttls(context=client_context(cert))
        client.ehlo()
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(address)[0] == 250


def test_unusable_tls_files_are_refused_naming_the_variable(
    runtime: Runtime, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    s = runtime.settings
    cases: list[tuple[dict[str, object], str]] = [
        ({"smtp_tls_cert_file": str(tmp_path / "none.pem"), "smtp_tls_key_file": str(key)},
         "CRM_SMTP_TLS_CERT_FILE: cannot read"),
        ({"smtp_tls_cert_file": str(cert), "smtp_tls_key_file": str(tmp_path / "none.pem")},
         "CRM_SMTP_TLS_KEY_FILE: cannot read"),
        ({"smtp_tls_cert_file": str(cert), "smtp_tls_key_file": str(cert)},
         "CRM_SMTP_TLS_CERT_FILE/CRM_SMTP_TLS_KEY_FILE: cannot use"),
        ({"smtp_tls_cert_file": str(cert)}, "CRM_SMTP_TLS_KEY_FILE: empty"),
        ({"smtp_require_tls": True}, "CRM_SMTP_REQUIRE_TLS: needs CRM_SMTP_TLS_CERT_FILE"),
    ]  # fmt: skip
    for changes, message in cases:
        with pytest.raises(SettingsError, match=message):
            load_tls_context(s.model_copy(update=changes))


def test_a_bad_certificate_path_stops_the_smtp_service_at_start(tmp_path: Path) -> None:
    process = crm_ingest(
        ["smtp"],
        {
            "CRM_DATA_DIR": str(tmp_path),
            "CRM_SMTP_PORT": str(free_port()),
            "CRM_SMTP_TLS_CERT_FILE": str(tmp_path / "missing-cert.pem"),
            "CRM_SMTP_TLS_KEY_FILE": str(tmp_path / "missing-key.pem"),
        },
        stderr=subprocess.PIPE,
    )
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "CRM_SMTP_TLS_CERT_FILE: cannot read" in err
    assert "Traceback" not in err
