"""What `crm-ingest <command> --help` tells besides the arguments: the ports the command
listens on and the `CRM_*` settings it reads, each with its default (from `Settings`, so
the list cannot drift from what the service validates at start).
"""

from __future__ import annotations

from importlib import metadata

from ingest.settings import Settings

# Every command opens the database (and the broker, where it uses one) and logs.
_COMMON = ("database_url", "broker_url", "broker_namespace", "data_dir", "log_", "secret_key")
_SMTP = ("smtp_", "dns_", "archive_domain", "db_lock_timeout", "metrics_")
_HTTP = (
    "http_",
    "api_",
    "hook_",
    "upload_",
    "ui_",
    "source_cache",
    "archive_",
    "default_region",
    "db_lock_timeout",
)
_WORKER = (
    "worker_threads",
    "max_attempts",
    "attempt_lease",
    "loop_limit",
    "max_attachment",
    "default_region",
    "archive_domain",
    "metrics_",
)
_SWEEPER = ("sweep_", "raw_retention", "attempt_lease")
_IMAP = ("imap_", "metrics_")

# Setting-name prefixes each command reads, beyond _COMMON.
SETTINGS_OF: dict[str, tuple[str, ...]] = {
    "run": _SMTP + _HTTP + _WORKER + _SWEEPER + _IMAP,
    "smtp": _SMTP,
    "api": _HTTP,
    "worker": _WORKER,
    "sweeper": _SWEEPER,
    "imap": _IMAP,
    "demo": ("archive_domain",),
    "reprocess": (),
    "migrate": (),
    "inbound": (),
    "mailbox": ("imap_ca_file",),
}

PORTS_OF: dict[str, tuple[str, ...]] = {
    "run": ("smtp_port", "http_port"),
    "smtp": ("smtp_port", "metrics_port"),
    "api": ("http_port",),
    "worker": ("metrics_port",),
    "imap": ("metrics_port",),
}

# What an empty value means, for the settings whose empty default is not "nothing".
_EMPTY_MEANS = {
    "database_url": "(empty: a SQLite file in CRM_DATA_DIR)",
    "broker_url": "(empty: the embedded Redis of CRM_DATA_DIR)",
    "api_token": "(empty: generated once into CRM_DATA_DIR/api_token)",
    "secret_key": "(empty: generated once into CRM_DATA_DIR/secret.key)",
}


def version() -> str:
    """The installed package's version (pyproject.toml's)."""
    return metadata.version("crm-ingest")


def epilog(command: str) -> str:
    """The help's closing text for `command`: its ports, then its settings and defaults."""
    fields = Settings.model_fields
    wanted = _COMMON + SETTINGS_OF.get(command, ())
    names = [name for name in fields if name.startswith(wanted)]
    lines = []
    ports = PORTS_OF.get(command, ())
    if ports:
        listed = ", ".join(f"{_variable(p)}={_default(p)}" for p in ports)
        off = "  (CRM_METRICS_PORT=0: no metrics port)" if "metrics_port" in ports else ""
        lines += [f"listens on: {listed}{off}", ""]
    lines.append("settings (environment variable, default):")
    width = max(len(_variable(name)) for name in names)
    lines += [f"  {_variable(n):<{width}}  {_default(n)}" for n in names]
    lines += ["", "Every setting is described in docs/configuration.md."]
    return "\n".join(lines)


def _variable(name: str) -> str:
    return f"CRM_{name.upper()}"


def _default(name: str) -> str:
    value = Settings.model_fields[name].get_default(call_default_factory=True)
    if name in _EMPTY_MEANS and not value:
        return _EMPTY_MEANS[name]
    if value == "":
        return '""'
    return str(value)
