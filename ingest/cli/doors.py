"""What a command listens on, taken before it starts anything else (a taken port stops it
with the setting to change), and the error that stops a command at start.
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass

from ingest.metrics import Figures
from ingest.settings import Settings

log = logging.getLogger("crm-ingest")


class StartupError(Exception):
    """The service cannot start as configured; the message names the setting to fix."""


@dataclass
class Doors:
    """What a command listens on, taken before it starts anything else: the HTTP socket
    (bound here, served later), the SMTP port (checked free), the metrics server (started)."""

    http: socket.socket | None = None

    def close(self) -> None:
        if self.http is not None:
            self.http.close()


def take_doors(settings: Settings, command: str, figures: Figures) -> Doors:
    s = settings
    doors = Doors()
    if command in ("run", "smtp"):
        _check_free(s.smtp_host, s.smtp_port, "SMTP", "CRM_SMTP_HOST", "CRM_SMTP_PORT")
    if command in ("run", "api"):
        doors.http = _listen(s.http_host, s.http_port, "HTTP", "CRM_HTTP_HOST", "CRM_HTTP_PORT")
    if command in ("smtp", "imap", "worker"):
        try:
            _serve_metrics(s, figures)
        except StartupError:
            doors.close()
            raise
    return doors


def _listen(host: str, port: int, what: str, host_var: str, port_var: str) -> socket.socket:
    """Bind the HTTP socket ourselves, so a taken port is reported with its setting's name."""
    try:
        return socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        raise door_error(exc, what, host, port, host_var, port_var) from None


def _check_free(host: str, port: int, what: str, host_var: str, port_var: str) -> None:
    """Bind host:port as the server will later (every address the name stands for, with
    SO_REUSEADDR as asyncio does) and let go: a taken port stops the command before it
    starts anything."""
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"{host_var}: cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _name, address in dict.fromkeys(found):
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
                probe.listen()
        except OSError as exc:
            raise door_error(exc, what, host, port, host_var, port_var) from None


def door_error(
    exc: OSError, what: str, host: str, port: int, host_var: str, port_var: str
) -> StartupError:
    """Which port, for what, and which variable to change."""
    if exc.errno == errno.EADDRINUSE:
        return StartupError(
            f"{port_var}: the {what} port {port} on {host} is already in use (another "
            f"crm-ingest?); nothing was started. Stop what listens there, or set {port_var} "
            f"to a free port."
        )
    return StartupError(
        f"{host_var}/{port_var}: cannot listen on {host}:{port} for {what}: {exc.strerror}; "
        f"nothing was started."
    )


def _serve_metrics(settings: Settings, figures: Figures) -> None:
    """This process's Prometheus counters on CRM_METRICS_HOST:CRM_METRICS_PORT (0: not served;
    `run` and `api` serve them at /metrics of the HTTP app instead)."""
    if not settings.metrics_port:
        return
    where = f"{settings.metrics_host}:{settings.metrics_port}"
    try:
        figures.serve(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        raise door_error(
            exc,
            "metrics",
            settings.metrics_host,
            settings.metrics_port,
            "CRM_METRICS_HOST",
            "CRM_METRICS_PORT",
        ) from None
    log.info("Prometheus metrics at http://%s/metrics", where)
