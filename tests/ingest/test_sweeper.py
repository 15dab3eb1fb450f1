"""The sweeper and processing attempts: a started attempt holds its input for its lease,
re-sends come further apart until one starts, a broker failing midway, and an attempt past
its time limit recorded as a failure."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from crm_core.models import utcnow
from ingest import inbound, processing
from ingest.pipeline import TimeLimitExceeded, begin_attempt, declare_actors
from ingest.runtime import Runtime
from ingest.sweeper import resend_waiting
from tests.support.helpers import inbound_items, wait_for


def _waiting_item(runtime: Runtime, key: str) -> int:
    [item_id] = inbound.store(
        runtime.commits,
        [inbound.NewInput(channel="email", raw=b"x", dedupe_key=key, recipient="r")],
    )
    return item_id


def test_a_started_attempt_holds_its_item_from_the_sweeper_for_its_lease(
    runtime: Runtime,
) -> None:
    item_id = _waiting_item(runtime, "lease")
    sent: list[int] = []
    enqueue = lambda _channel, item: sent.append(item)  # noqa: E731
    assert begin_attempt(runtime.sessions, item_id, 5, lease=timedelta(seconds=60))
    # 30 s on, the attempt may still run: not sent again; past its lease it is.
    soon = utcnow() + timedelta(seconds=30)
    assert resend_waiting(runtime.sessions, soon, enqueue) == 0
    later = utcnow() + timedelta(seconds=61)
    assert resend_waiting(runtime.sessions, later, enqueue) == 1
    assert sent == [item_id]


def test_re_sends_no_attempt_follows_come_further_apart_until_one_starts(
    runtime: Runtime,
) -> None:
    # Given an item the broker holds behind a long backlog: no worker starts on it
    item_id = _waiting_item(runtime, "backlog")
    sent: list[int] = []
    gap = timedelta(seconds=10)  # the sweep delay

    def sweep(ahead: float) -> int:
        """A sweep as if `ahead` s had passed since the last one marked it sent."""
        due = utcnow() + timedelta(seconds=ahead) - gap
        return resend_waiting(runtime.sessions, due, lambda _c, i: sent.append(i), 500, gap)

    def quiet() -> int:
        item = processing.load(runtime.sessions, item_id)
        assert item is not None
        return item.quiet_resends

    # The first re-send comes one sweep delay after the send
    assert sweep(10.5) == 1 and quiet() == 1
    # then the gaps double: 2 x, then 4 x the delay (checked half-way: not yet)
    assert sweep(15) == 0
    assert sweep(21) == 1 and quiet() == 2
    assert sweep(30) == 0
    assert sweep(41) == 1 and quiet() == 3
    # and stay at 8 x
    assert sweep(60) == 0
    assert sweep(81) == 1 and quiet() == 4
    assert sweep(60) == 0
    assert sweep(81) == 1 and quiet() == 5
    # When a worker starts an attempt (then dies), the next re-send is one delay away again
    assert begin_attempt(runtime.sessions, item_id, 5, lease=timedelta(0))
    assert quiet() == 0
    assert sweep(10.5) == 1 and quiet() == 1
    assert sent == [item_id] * 6
    item = processing.load(runtime.sessions, item_id)
    assert item is not None and item.resends == 6


def test_an_attempt_starting_while_the_sweeper_sends_keeps_its_lease(runtime: Runtime) -> None:
    item_id = _waiting_item(runtime, "race")
    lease = timedelta(seconds=60)

    def taken_at_once(_channel: str, item: int) -> None:
        # a worker takes the re-sent item before the sweeper records the send
        assert begin_attempt(runtime.sessions, item, 5, lease=lease)

    assert resend_waiting(runtime.sessions, utcnow(), taken_at_once, 500, lease) == 1
    item = processing.load(runtime.sessions, item_id)
    assert item is not None and item.resends == 1 and item.quiet_resends == 0
    assert item.enqueued_at is not None and item.enqueued_at > utcnow() + timedelta(seconds=50)


def test_a_broker_failing_midway_keeps_what_it_took_and_leaves_the_rest_due(
    runtime: Runtime,
) -> None:
    first, second = _waiting_item(runtime, "a"), _waiting_item(runtime, "b")
    taken: list[int] = []

    def flaky(_channel: str, item_id: int) -> None:
        if item_id == second:
            raise ConnectionError("broker gone")
        taken.append(item_id)

    due = utcnow()  # both stored before: due
    with pytest.raises(ConnectionError):
        resend_waiting(runtime.sessions, due, flaky)
    took, refused = (
        processing.load(runtime.sessions, first),
        processing.load(runtime.sessions, second),
    )
    assert took is not None and took.resends == 1
    assert refused is not None and refused.resends == 0
    # The one not sent is due again at once; the one sent waits for the next sweep delay.
    again = resend_waiting(runtime.sessions, due, lambda _c, i: taken.append(i))
    assert again == 1
    assert taken == [first, second]


def test_an_attempt_past_its_time_limit_is_recorded_as_a_failure(
    api: httpx.Client, runtime: Runtime
) -> None:
    item_id = _waiting_item(runtime, "slow")

    def interrupted(_sessions: object, _item_id: int) -> None:
        raise TimeLimitExceeded("attempt took too long")

    # One attempt allowed: recorded as failed, then parked (not retried).
    slow = declare_actors(runtime.pipeline.broker, runtime.sessions, 1, {"slow": interrupted})
    slow.enqueue("slow", item_id)
    running = slow.start_worker(threads=1, poll_ms=100)
    try:
        wait_for(lambda: inbound_items(api, "failed"), timeout=30, what="the parked item")
    finally:
        running.stop()
    item = processing.load(runtime.sessions, item_id)
    assert item is not None and item.attempts == 1 and item.status == "failed"
    assert item.error == "TimeLimitExceeded: attempt took too long"
