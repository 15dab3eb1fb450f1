"""Starting the SMTP door: the STARTTLS context from the settings, and the listening server
whose connections each get an `ArchiveSMTP` protocol around the shared handler.
"""

from __future__ import annotations

import asyncio
import ssl

from aiosmtpd.smtp import SMTP

from ingest.mailbox.smtp_handler import ArchiveHandler
from ingest.mailbox.smtp_limits import DEFAULT_LIMITS, ConnectionCount, DoorLimits
from ingest.mailbox.smtp_session import ArchiveSMTP
from ingest.mailbox.spool import MemoryBudget
from ingest.settings import Settings, SettingsError


def load_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The STARTTLS context from CRM_SMTP_TLS_CERT_FILE/KEY_FILE, None when both are empty.

    Raises SettingsError naming the variable when a file cannot be read or used, so the
    service stops at start rather than at a client's first STARTTLS.
    """
    cert, key = settings.smtp_tls_cert_file, settings.smtp_tls_key_file
    if not cert and not key:
        if settings.smtp_require_tls:
            raise SettingsError(
                "CRM_SMTP_REQUIRE_TLS: needs CRM_SMTP_TLS_CERT_FILE and CRM_SMTP_TLS_KEY_FILE"
            )
        return None
    for name, path in (("CRM_SMTP_TLS_CERT_FILE", cert), ("CRM_SMTP_TLS_KEY_FILE", key)):
        if not path:
            raise SettingsError(f"{name}: empty, but the other TLS file is set")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise SettingsError(
            f"CRM_SMTP_TLS_CERT_FILE/CRM_SMTP_TLS_KEY_FILE: cannot use {cert} with {key}: {exc}"
        ) from None
    return context


async def start_smtp_server(
    handler: ArchiveHandler,
    host: str,
    port: int,
    *,
    max_message_bytes: int,
    hostname: str,
    limits: DoorLimits = DEFAULT_LIMITS,
    tls: ssl.SSLContext | None = None,
    require_tls: bool = False,
) -> asyncio.Server:
    """Listen on host:port; SIZE is advertised and larger messages get 552 (RFC 1870).

    STARTTLS is offered when `tls` is given (and required before MAIL with require_tls).
    The end of DATA is only CRLF "." CRLF (aiosmtpd >= 1.4.5): bare LFs, LF "." CRLF or
    CRLF "." LF are message text, stored as such, not refused: we are the last hop, so no
    server after us can read them as an end (SMTP smuggling needs two readings).
    """
    loop = asyncio.get_running_loop()
    connections = ConnectionCount(limits.max_connections, limits.max_connections_per_ip)
    budget = MemoryBudget(limits.max_memory_bytes)  # shared by this server's sessions

    def protocol() -> SMTP:
        return ArchiveSMTP(
            handler,
            limits,
            connections,
            budget,
            data_size_limit=max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=hostname,
            ident="crm-ingest ESMTP",
            tls_context=tls,
            require_starttls=require_tls,
            loop=loop,
        )

    return await loop.create_server(protocol, host=host, port=port)
