"""Observability (issue 10): every log line of an input's processing carries its inbound id;
`/metrics` gives the pipeline's figures in Prometheus' text format, read over real HTTP.

The counters are per process (Prometheus' way) and every test of this run shares the
process, so the metrics test compares figures before and after what it does.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from email.policy import SMTP
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_core.db import unit_of_work
from crm_core.models import InboundStatus
from ingest import inbound, inbound_admin, logs, processing
from ingest.mailbox import mailboxes
from ingest.pipeline import declare_actors
from ingest.runtime import Runtime
from tests.conftest import FakeClock
from tests.support.calllog import call, card_with_phone, post_signed, source
from tests.support.cli import free_port, listening, processes
from tests.support.helpers import (
    archive_address,
    create_card,
    create_user,
    inbound_items,
    make_mail,
    read_metrics,
    send,
    wait_for,
)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every line the process logs (DEBUG and up), through the service's own JSON handler."""
    stream = io.StringIO()
    handler = logs.make_handler(stream, "json")
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    for line in lines:  # one JSON object per line, with the fields a collector indexes
        assert {"time", "level", "logger", "message"} <= set(line), line
    return lines


def test_each_line_of_a_mails_way_through_carries_its_inbound_id(
    api: httpx.Client,
    runtime: Runtime,
    smtp_server: tuple[str, int],
    worker: None,
    log_lines: io.StringIO,
) -> None:
    anna = create_user(api, "anna@example.com")
    address = archive_address(api, create_card(api, anna["id"])["id"])
    # Given an out-of-office reply sent to a card's archive address
    reply = make_mail("john.doe@acme.com", address, subject="Out of office")
    reply["Auto-Submitted"] = "auto-replied"
    send(smtp_server, reply, address, "john.doe@acme.com")
    # When the worker has rejected it
    [item] = wait_for(lambda: inbound_items(api, "rejected"), what="the rejected reply")
    item_id = item["id"]
    # Then each line that speaks of it, at the front door and in the worker, carries its id
    lines = parsed(log_lines)
    about = [line for line in lines if re.search(rf"\binbound item {item_id}\b", line["message"])]
    assert {line["logger"] for line in about} >= {"ingest.inbound", "ingest.processing"}
    for line in about:
        assert (line.get("inbound_id"), line.get("channel")) == (item_id, "email"), line
    tagged = [line for line in lines if line.get("inbound_id") == item_id]
    assert any("rejected: automatic message" in line["message"] for line in tagged)
    # And no line outside its handling carries it (the API's own lines, for one)
    assert all(line["logger"] != "uvicorn.access" for line in tagged)


def test_a_failing_processors_lines_and_the_libraries_carry_the_id(
    api: httpx.Client, runtime: Runtime, log_lines: io.StringIO
) -> None:
    # Given a processor that logs through a library's logger and the core's, then fails
    def failing(_sessions: object, inbound_id: int) -> None:
        logging.getLogger("somelibrary.connection").warning("deep inside a library")
        logging.getLogger("crm_core.services").info("core work for the item")
        raise RuntimeError("the CRM core is unreachable")

    broken = declare_actors(
        runtime.pipeline.broker, runtime.sessions, 3, processors={"broken": failing}
    )
    [item_id] = inbound.store(
        runtime.commits,
        [inbound.NewInput(channel="broken", raw=b"x", dedupe_key="obs-1", recipient="r")],
    )
    broken.enqueue("broken", item_id)
    running = broken.start_worker(threads=1, poll_ms=100)
    try:
        wait_for(lambda: inbound_items(api, "failed"), timeout=60, what="the parked item")
    finally:
        running.stop()
    # Then every line of its three attempts carries its id: the library's and the core's,
    # ours (a retry warning, then "failed for good"), and Dramatiq's (failure, retry)
    lines = parsed(log_lines)
    tagged = [line for line in lines if line.get("inbound_id") == item_id]
    assert all(line["channel"] == "broken" for line in tagged)
    by_logger = {line["logger"] for line in tagged}
    assert by_logger >= {
        "somelibrary.connection",
        "crm_core.services",
        "worker",
        "ingest.inbound",
        "dramatiq.worker.WorkerThread",
        "dramatiq.middleware.retries.Retries",
    }, by_logger
    mine = [
        line
        for line in lines
        if line["logger"] in ("somelibrary.connection", "crm_core.services", "worker")
        or f"inbound item {item_id} " in line["message"]
        or (line["logger"].startswith("dramatiq") and line["level"] in ("ERROR", "WARNING"))
    ]
    assert len([line for line in mine if line["logger"] == "somelibrary.connection"]) == 3
    for line in mine:
        assert line.get("inbound_id") == item_id, line
    failure = next(line for line in tagged if line["logger"] == "dramatiq.worker.WorkerThread")
    assert "RuntimeError: the CRM core is unreachable" in failure["exception"]


def test_the_text_format_shows_the_id_too() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.observability.text")
    handler = logs.make_handler(stream, "text")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with logs.inbound_context(41, "call"):
            logger.warning("inside")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith("WARNING tests.observability.text: inside [inbound 41 call]")
    assert outside.endswith("WARNING tests.observability.text: outside")


def _figure(families: dict[str, Any], name: str, **labels: str) -> float:
    """The value of one sample (0 when the series does not exist yet)."""
    return sum(
        float(sample.value)
        for family in families.values()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_count_what_the_doors_and_the_worker_did(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], clock: FakeClock
) -> None:
    anna = create_user(api, "anna@example.com")
    address = archive_address(api, create_card(api, anna["id"])["id"])
    card_with_phone(api, anna["id"])
    hook = source(api)
    before = read_metrics(api)
    assert _figure(before, "crm_inbound_queue_depth") == 0

    # Given, with no worker running: a mail for the card and an automatic reply over SMTP,
    send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
    reply = make_mail("john.doe@acme.com", address, subject="Out of office")
    reply["Auto-Submitted"] = "auto-replied"
    send(smtp_server, reply, address, "john.doe@acme.com")
    # a call from the card's contact by the call-log webhook (sent twice: stored once),
    batch = {"calls": [call("06 12 34 56 78", "obs-call-1", anna["email"])]}
    for _ in range(2):
        assert post_signed(api, hook, batch, clock).status_code == 202
    # and a message an IMAP mailbox held for no card (stored as rejected by the door)
    lost = b"Subject: lost\r\n\r\nno archive address\r\n"
    mailboxes.take(runtime.commits, 1, 1, 1, lost, "archive.test")

    # Then three inputs wait, and the doors counted what they stored
    waiting = read_metrics(api)
    assert _figure(waiting, "crm_inbound_queue_depth") == 3
    delta = _delta(before, waiting)
    assert delta("crm_inbound_accepted_total", channel="email") == 2
    assert delta("crm_inbound_accepted_total", channel="call") == 1
    assert delta("crm_inbound_rejected_total", channel="email") == 1  # the IMAP one

    # When a worker takes them
    running = runtime.pipeline.start_worker(threads=2, poll_ms=100)
    try:
        wait_for(lambda: _figure(read_metrics(api), "crm_inbound_queue_depth") == 0)
        wait_for(lambda: _finished(runtime) == 4, what="four inputs finished")
    finally:
        running.stop()
    after = read_metrics(api)
    delta = _delta(before, after)
    # Then the figures say what happened to each, and the queue is empty again
    assert _figure(after, "crm_inbound_queue_depth") == 0
    assert delta("crm_inbound_processed_total", channel="email") == 1
    assert delta("crm_inbound_processed_total", channel="call") == 1
    assert delta("crm_inbound_rejected_total", channel="email") == 2  # + the auto-reply
    assert delta("crm_inbound_rejected_total", channel="call") == 0
    assert delta("crm_inbound_failed_total", channel="email") == 0
    # And the end-to-end latency was observed once per processed input
    for channel in ("email", "call"):
        assert delta("crm_inbound_latency_seconds_count", channel=channel) == 1
        assert delta("crm_inbound_latency_seconds_sum", channel=channel) > 0
    assert after["crm_inbound_latency_seconds"].type == "histogram"


@pytest.mark.settings(loop_limit_count=1)
def test_a_mail_held_as_a_loop_is_counted_as_held(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int]
) -> None:
    anna = create_user(api, "anna@example.com")
    address = archive_address(api, create_card(api, anna["id"])["id"])
    before = read_metrics(api)
    # Given two copies of one mail to one address (two relays), with a limit of one
    mail = make_mail("anna@example.com", address, "m").as_bytes(policy=SMTP)
    for n in (1, 2):
        relay = f"Received: from relay{n} by mx; Fri, 20 Nov 2026 09:31:00 +0000\r\n"
        send(smtp_server, relay.encode() + mail, address, "a@x")
    running = runtime.pipeline.start_worker(threads=1, poll_ms=100)
    try:
        wait_for(lambda: _finished(runtime) == 2, what="both mails finished")
    finally:
        running.stop()
    # Then one is counted processed and the other held
    delta = _delta(before, read_metrics(api))
    assert delta("crm_inbound_processed_total", channel="email") == 1
    assert delta("crm_inbound_held_total", channel="email") == 1


def test_metrics_need_the_admin_token(api: httpx.Client) -> None:
    response = httpx.get(str(api.base_url.join("/metrics")))
    assert response.status_code == 401
    assert "crm_inbound_accepted_total" not in response.text


def _delta(before: dict[str, Any], after: dict[str, Any]) -> Any:
    def delta(name: str, **labels: str) -> float:
        return _figure(after, name, **labels) - _figure(before, name, **labels)

    return delta


def _finished(runtime: Runtime) -> int:
    items = inbound_admin.list_items(runtime.sessions, None, 100)
    return sum(1 for item in items if item.status != InboundStatus.RECEIVED.value)


def test_an_attempt_rolled_back_after_finishing_counts_nothing(
    api: httpx.Client, runtime: Runtime
) -> None:
    # Given a processor that finishes its item, then fails in the same transaction
    def finishes_then_fails(sessions: Any, inbound_id: int) -> None:
        with unit_of_work(sessions) as session:
            item = processing.claim(session, inbound_id)
            assert item is not None
            processing.finish(item, InboundStatus.PROCESSED)
            raise RuntimeError("the commit never happens")

    pipeline = declare_actors(
        runtime.pipeline.broker, runtime.sessions, 2, processors={"late": finishes_then_fails}
    )
    before = read_metrics(api)
    [item_id] = inbound.store(
        runtime.commits,
        [inbound.NewInput(channel="late", raw=b"x", dedupe_key="obs-2", recipient="r")],
    )
    pipeline.enqueue("late", item_id)
    running = pipeline.start_worker(threads=1, poll_ms=100)
    try:
        wait_for(lambda: inbound_items(api, "failed"), timeout=60, what="the parked item")
    finally:
        running.stop()
    # Then only what the database kept is counted: failed once, never processed
    delta = _delta(before, read_metrics(api))
    assert delta("crm_inbound_processed_total", channel="late") == 0
    assert delta("crm_inbound_latency_seconds_count", channel="late") == 0
    assert delta("crm_inbound_failed_total", channel="late") == 1


def test_a_worker_process_logs_json_and_serves_its_counters(
    api: httpx.Client, runtime: Runtime, smtp_server: tuple[str, int], tmp_path: Path
) -> None:
    """`crm-ingest worker` as deployed: its own logging setup, its own metrics listener."""
    s = runtime.settings
    port = free_port()
    env = {
        "CRM_DATABASE_URL": s.database_url,
        "CRM_BROKER_URL": s.broker_url,
        "CRM_BROKER_NAMESPACE": s.broker_namespace,
        "CRM_DATA_DIR": str(tmp_path),
        "CRM_METRICS_PORT": str(port),
        "CRM_LOG_LEVEL": "INFO",
        "CRM_LOG_FORMAT": "json",
    }
    anna = create_user(api, "anna@example.com")
    address = archive_address(api, create_card(api, anna["id"])["id"])
    log_file = tmp_path / "worker.log"
    with log_file.open("w") as stderr, processes([(["worker"], env)], stderr=stderr):
        wait_for(lambda: listening(port), timeout=60, what="the worker's metrics port")
        send(smtp_server, make_mail("anna@example.com", address), address, "anna@example.com")
        reply = make_mail("john.doe@acme.com", address, subject="Out of office")
        reply["Auto-Submitted"] = "auto-replied"
        send(smtp_server, reply, address, "john.doe@acme.com")
        wait_for(lambda: _finished(runtime) == 2, what="both mails finished")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as scraper:
            # no token: its own port, on loopback by default; the worker counts just after
            # its commit, so the figures may come a moment after the database shows it
            def counted() -> dict[str, Any] | None:
                figures = read_metrics(scraper)
                done = _figure(figures, "crm_inbound_processed_total", channel="email")
                done += _figure(figures, "crm_inbound_rejected_total", channel="email")
                return figures if done == 2 else None

            figures = wait_for(counted, what="the worker's counters")
    # Then the worker process counted what it did (its counters are its own)
    assert _figure(figures, "crm_inbound_processed_total", channel="email") == 1
    assert _figure(figures, "crm_inbound_rejected_total", channel="email") == 1
    assert _figure(figures, "crm_inbound_latency_seconds_count", channel="email") == 1
    assert _figure(figures, "crm_inbound_accepted_total", channel="email") == 0  # the door's
    # And it logged one JSON object per line, the rejection under the reply's inbound id
    [rejected] = inbound_items(api, "rejected")
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(line["message"].startswith("worker started") for line in lines)
    [line] = [line for line in lines if "rejected" in line["message"]]
    assert (line["inbound_id"], line["channel"], line["level"]) == (
        rejected["id"],
        "email",
        "INFO",
    )
