"""The `crm-ingest` command: settings validation, and `run` with embedded defaults end to end."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import httpx

from ingest import cli_help
from ingest.cli.serve import banner
from ingest.settings import Settings
from tests.support.cli import crm_ingest, free_port
from tests.support.dns_server import TestDns
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    history,
    make_mail,
    send,
    wait_for,
)
from tests.support.helpers import counters as read_counters


def test_a_bad_setting_stops_the_start_naming_the_variable(tmp_path: Path) -> None:
    process = crm_ingest(
        ["run"],
        {
            "CRM_SMTP_PORT": "seventy",
            "CRM_DATABASE_URL": "mysql://x",
            "CRM_DATA_DIR": str(tmp_path),
        },
        stderr=subprocess.PIPE,
    )
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "CRM_SMTP_PORT" in err
    assert "CRM_DATABASE_URL: Value error, must be a sqlite:// or postgresql:// URL" in err
    assert "Traceback" not in err


def test_run_with_embedded_defaults_end_to_end(tmp_path: Path, test_dns: TestDns) -> None:
    """The README's path: start, create a user and a card, mail the card, see it."""
    smtp_port, http_port = free_port(), free_port()
    env = {
        "CRM_DNS_SERVERS": test_dns.address,
        "CRM_DATA_DIR": str(tmp_path / "var"),
        "CRM_SMTP_PORT": str(smtp_port),
        "CRM_HTTP_PORT": str(http_port),
        "CRM_DATABASE_URL": "",
        "CRM_BROKER_URL": "",
        "CRM_API_TOKEN": "",
    }
    process = crm_ingest(["run"], env, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        token = ""
        for line in process.stdout:
            if line.strip().startswith("API token"):
                token = line.split()[-1]
                break
        assert token, "run printed no API token"
        assert (tmp_path / "var" / "api_token").read_text().strip() == token
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{http_port}",
            headers={"Authorization": f"Bearer {token}"},
        )
        wait_for(lambda: _up(api), what="the HTTP API")
        anna = create_user(api, "anna@example.com")
        card = create_card(api, anna["id"])
        address = archive_address(api, card["id"])
        send(("127.0.0.1", smtp_port), make_mail("anna@example.com", address), address, "a@b.c")
        [entry] = wait_for(lambda: history(api, card["id"]), what="history")
        assert entry["from"]["address"] == "anna@example.com"
        assert read_counters(api, anna["id"])["incoming"] == 1
        kanban = api.get("/api/kanban", params={"entity_type": "deal", "stage": "new"}).json()
        assert kanban["cards"][0]["focus_reason"] == "incoming e-mail"
        assert (tmp_path / "var" / "crm.sqlite3").exists()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0


def _up(api: httpx.Client) -> bool:
    try:
        return api.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_demo_fills_an_empty_database_and_refuses_one_with_data(tmp_path: Path) -> None:
    """`demo` never changes existing data: run again, it refuses instead of rotating the
    cards' addresses (a rotated address would stop working for whoever uses it)."""
    env = {"CRM_DATA_DIR": str(tmp_path), "CRM_DATABASE_URL": "", "CRM_BROKER_URL": ""}
    first = crm_ingest(["demo"], env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, _err = first.communicate(timeout=120)
    assert first.returncode == 0
    lines = out.splitlines()
    assert [line.split()[1] for line in lines] == ["1", "2", "3"]
    assert all(line.endswith("@archive.localhost") for line in lines)
    before = _addresses(tmp_path / "crm.sqlite3")
    assert [(card, expires, revoked) for card, _, expires, revoked in before] == [
        (1, None, None),
        (2, None, None),
        (3, None, None),
    ]
    again = crm_ingest(["demo"], env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 1
    assert out == ""
    assert "crm-ingest demo: the database is not empty (" in err
    assert "CRM_DATA_DIR" in err
    assert _addresses(tmp_path / "crm.sqlite3") == before


def _addresses(path: Path) -> list[tuple[int, str, str | None, str | None]]:
    with closing(sqlite3.connect(path)) as db:
        rows: list[tuple[int, str, str | None, str | None]] = db.execute(
            "SELECT card_id, token_hash, expires_at, revoked_at FROM archive_addresses ORDER BY id"
        ).fetchall()
    return rows


def test_run_banner_prints_no_secret_it_was_given(tmp_path: Path) -> None:
    """Issue 20: the probe read `postgresql://postgres:S3cret…` and the admin token from
    CRM_API_TOKEN in the start banner. Given secrets are masked; a generated token is shown."""
    given = Settings(
        database_url="postgresql+psycopg://postgres:S3cretPw@db.internal:5432/crm",
        api_token="prod-admin-token-0123456789",
        data_dir=tmp_path,
    )
    shown = banner(given, "CRM_BROKER_URL")
    assert "S3cretPw" not in shown and "prod-admin-token" not in shown
    assert "postgresql+psycopg://postgres:***@db.internal:5432/crm" in shown
    assert "API token from CRM_API_TOKEN (not shown)" in shown
    generated = banner(Settings(data_dir=tmp_path), "embedded Redis")
    token = (tmp_path / "api_token").read_text().strip()
    assert generated.splitlines()[-1].split() == ["API", "token", token]


def test_help_lists_each_commands_ports_and_settings_and_version_exists() -> None:
    """Issue 21: `crm-ingest <cmd> --help` names the command's ports and settings."""
    every = set(Settings.model_fields)
    run_help = cli_help.epilog("run")
    assert [name for name in every if f"CRM_{name.upper()} " not in run_help] == []
    smtp_help = cli_help.epilog("smtp")
    assert "listens on: CRM_SMTP_PORT=2525, CRM_METRICS_PORT=0" in smtp_help
    assert "CRM_HTTP_PORT" not in smtp_help and "CRM_SMTP_MAX_JUNK_COMMANDS " in smtp_help
    assert "CRM_API_MAX_BODY_BYTES " in cli_help.epilog("api")
    assert "listens on" not in cli_help.epilog("migrate")
    shown = crm_ingest(["--version"], {}, stdout=subprocess.PIPE)
    out, _ = shown.communicate(timeout=60)
    assert shown.returncode == 0 and out.strip() == f"crm-ingest {cli_help.version()}"
    assert cli_help.version() == "0.1.0"


def test_a_password_given_as_a_query_parameter_is_not_printed_either(tmp_path: Path) -> None:
    """The outside probe's second run: `...?password=S3cretPW` was printed verbatim."""
    given = Settings(
        database_url="postgresql://postgres@127.0.0.1:5432/db?password=S3cretPW&sslmode=require",
        data_dir=tmp_path,
    )
    shown = banner(given, "CRM_BROKER_URL")
    assert "S3cretPW" not in shown and "password=***" in shown and "sslmode=require" in shown
