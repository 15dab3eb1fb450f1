"""`crm-ingest <command>` as a process of its own on the test runtime's database and broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ingest.runtime import Runtime


def crm_env(runtime: Runtime, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `crm-ingest` process on this test's database and broker;
    `extra` settings as CRM_<NAME>."""
    s = runtime.settings
    return {
        **os.environ,
        "CRM_DATABASE_URL": s.effective_database_url(),
        "CRM_BROKER_URL": s.broker_url,
        "CRM_BROKER_NAMESPACE": s.broker_namespace,
        "CRM_DATA_DIR": str(tmp_path),
        "CRM_DB_LOCK_TIMEOUT_SECONDS": "60",
        "CRM_SWEEP_AFTER_SECONDS": "1",
        "CRM_SWEEP_INTERVAL_SECONDS": "0.2",
        "CRM_WORKER_THREADS": "1",
        "CRM_ATTEMPT_LEASE_SECONDS": "0",  # a killed worker's item is due after sweep_after
        "CRM_DNS_SERVERS": s.dns_servers,
        **{f"CRM_{name.upper()}": value for name, value in extra.items()},
    }


def crm_ingest(
    command: str, runtime: Runtime, tmp_path: Path, **extra: str
) -> subprocess.Popen[bytes]:
    """`crm-ingest <command>` as a process of its own (`-m module` runs that module)."""
    env = crm_env(runtime, tmp_path, **extra)
    if command.startswith("-m "):
        return subprocess.Popen([sys.executable, *command.split()], env=env)
    return subprocess.Popen([sys.executable, "-m", "ingest.cli", command], env=env)
