"""The inbound store: every raw input, kept durably before any front door says yes.

Front doors `store` (or `submit`, from an event loop) through their runtime's
`GroupCommit`, then `enqueue_stored`. Workers `begin_attempt`, `claim` an item inside their
use-case transaction and `finish` it there, or `record_failure` after an error of ours.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, LargeBinary, and_, func, or_, select, update
from sqlalchemy.orm import Session, defer, sessionmaker

from crm_core.db import read_only, unit_of_work
from crm_core.models import InboundItem, InboundStatus, utcnow
from ingest import logs, metrics

if TYPE_CHECKING:
    from ingest.group_commit import GroupCommit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewInput:
    channel: str
    raw: bytes
    dedupe_key: str
    recipient: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # Set when the front door already knows the input cannot be taken (e.g. an IMAP message
    # with no archive address): kept, visible as rejected with this reason, never processed.
    rejected: str | None = None


def email_key(recipient: str, raw: bytes) -> str:
    """One item per card: the same bytes to the same archive address are the same mail,
    whether they came by SMTP or IMAP."""
    return "email:" + hashlib.sha256(recipient.encode() + b"\0" + raw).hexdigest()


def store(commits: GroupCommit, inputs: list[NewInput]) -> list[int]:
    """Commit all `inputs` and return their ids, in order, once they are durable.

    An input whose dedupe key is already stored is not stored again: its existing id is
    returned. Raises StoreUnavailable if the commit fails (nothing is then written).
    Concurrent callers share commits (`commits`: the runtime's `GroupCommit`)."""
    return commits.submit(inputs).result()


def submit(commits: GroupCommit, inputs: list[NewInput]) -> Future[list[int]]:
    """`store` without waiting: the future gives the ids once committed (for event loops)."""
    return commits.submit(inputs)


def enqueue_stored(enqueue: Callable[[str, int], None], channel: str, ids: list[int]) -> None:
    """After the store, at every front door: send each id to the workers, logging under it.
    Stored is what matters: if the broker is down, the sweeper sends them once it is back."""
    for item_id in ids:
        with logs.inbound_context(item_id, channel):
            log.info("inbound item %s stored, sending it to the workers", item_id)
            try:
                enqueue(channel, item_id)
            except Exception:
                log.warning("broker unavailable; inbound item %s left to the sweeper", item_id)


def load(sessions: sessionmaker[Session], item_id: int) -> InboundItem | None:
    with read_only(sessions) as session:
        return session.get(InboundItem, item_id)


def claim(session: Session, item_id: int) -> InboundItem | None:
    """Lock the item for this transaction; None if it is unknown or no longer waiting.

    The row lock makes two workers given the same id (a redelivery, a sweep) take turns;
    the second then finds it finished and does nothing.
    """
    item = lock(session, item_id)
    if item is None:
        log.warning("inbound item %s does not exist", item_id)
        return None
    if item.status != InboundStatus.RECEIVED.value:
        log.info("inbound item %s already %s", item_id, item.status)
        return None
    return item


def lock(session: Session, item_id: int) -> InboundItem | None:
    """The item, its row held for the transaction, whatever its status."""
    return session.scalar(select(InboundItem).where(InboundItem.id == item_id).with_for_update())


def finish(item: InboundItem, status: InboundStatus, reason: str | None = None) -> None:
    metrics.finishing(item, status)
    item.status = status.value
    item.reason = reason
    item.finished_at = utcnow()


def begin_attempt(
    sessions: sessionmaker[Session],
    item_id: int,
    max_attempts: int,
    lease: timedelta = timedelta(0),
) -> bool:
    """Count an attempt before it starts; False if the item is not waiting any more.

    Counting at the start, in a commit of its own, is what bounds an input that kills its
    worker (out of memory, a crash in a parser, kill -9): nothing after the kill is ever
    recorded, so a count kept at the end would let the sweeper re-send it forever. Once
    `max_attempts` attempts have started and none finished, the item is parked as failed.
    """
    with unit_of_work(sessions) as session:
        item = lock(session, item_id)
        if item is None:
            log.warning("inbound item %s does not exist", item_id)
            return False
        if item.status != InboundStatus.RECEIVED.value:
            log.info("inbound item %s already %s", item_id, item.status)  # a redelivery
            return False
        if item.attempts >= max_attempts:
            died = f"{item.attempts} attempts started and none finished (the worker stopped)"
            item.error = f"{item.error}; {died}" if item.error else died
            finish(item, InboundStatus.FAILED)
            log.error("inbound item %s failed for good: %s", item_id, died)
            return False
        item.attempts += 1
        item.quiet_resends = 0  # it reached a worker: the sweeper's next re-send is not late
        # A lease: this attempt has it until its time limit has passed (an attempt is
        # interrupted then); only after that plus sweep_after does the sweeper send it again,
        # so a slow attempt is never doubled by a re-send. record_failure ends the lease.
        item.enqueued_at = utcnow() + lease
        return True


def record_failure(
    sessions: sessionmaker[Session], item_id: int, error: str, max_attempts: int
) -> bool:
    """Keep the error of a failed attempt (counted by `begin_attempt`); park the item as
    failed once `max_attempts` are spent.

    Returns True when the item is parked (stop retrying), False when it should be retried.
    """
    with unit_of_work(sessions) as session:
        item = lock(session, item_id)
        if item is None or item.status != InboundStatus.RECEIVED.value:
            return True
        item.error = error[:4000]
        item.enqueued_at = utcnow()  # the broker retries it: not the sweeper's to re-send yet
        if item.attempts >= max_attempts:
            finish(item, InboundStatus.FAILED)
            log.error("inbound item %s failed for good after %s attempts", item_id, item.attempts)
            return True
        return False


def recent_copies(session: Session, item: InboundItem, since: datetime, enough: int) -> int:
    """How many other inputs to `item`'s recipient, processed since `since`, are the same
    message as `item`: the same Message-ID (`message_id_hash`) or the same content
    (`content_digest`). Counted up to `enough` (the loop guard: a loop of thousands of
    copies costs each of them at most twice `enough` rows, not thousands); one query per
    sign, each on its index (ix_inbound_items_loop_message_id, ix_inbound_items_loop)."""
    found: set[int] = set()
    for column, value in (
        (InboundItem.message_id_hash, item.message_id_hash),
        (InboundItem.content_digest, item.content_digest),
    ):
        if value is None or len(found) >= enough:
            continue
        found.update(
            session.scalars(
                select(InboundItem.id)
                .where(
                    InboundItem.recipient == item.recipient,
                    column == value,
                    InboundItem.received_at >= since,
                    InboundItem.status == InboundStatus.PROCESSED.value,
                    InboundItem.id != item.id,
                )
                .limit(enough)
            )
        )
    return min(len(found), enough)


# A quiet re-send (no attempt started since the last send) pushes the next one back by
# `backoff` x this, by how many quiet re-sends came before: after the first re-send of an
# item stuck behind a backlog, the gaps double (2, 4, 8 x the sweep delay) and stay at 8 x.
QUIET_BACKOFF_STEPS = (1, 3, 7)


def quiet_backoff(quiet_resends: int, backoff: timedelta) -> timedelta:
    """How much later than the plain sweep delay the next re-send of an item comes, after
    `quiet_resends` earlier re-sends that no attempt followed."""
    return backoff * QUIET_BACKOFF_STEPS[min(quiet_resends, len(QUIET_BACKOFF_STEPS) - 1)]


def resend_waiting(
    sessions: sessionmaker[Session],
    enqueued_before: datetime,
    enqueue: Callable[[str, int], None],
    limit: int = 500,
    backoff: timedelta = timedelta(0),
) -> int:
    """Send again up to `limit` waiting items last enqueued before `enqueued_before`; return
    how many the broker took (each counted in `resends`). No row lock is held while the
    broker is called; if it fails, the items not sent stay due and the error is raised.

    An item re-sent while no attempt started since its last send most likely waits in the
    broker behind a backlog (a re-send only joins the queue's tail): its next re-send comes
    `quiet_backoff` later, so a long backlog is not multiplied by re-sends of itself.
    """
    now = utcnow()
    with unit_of_work(sessions) as session:
        rows = session.execute(
            select(InboundItem.id, InboundItem.channel, InboundItem.quiet_resends)
            .where(
                InboundItem.status == InboundStatus.RECEIVED.value,
                InboundItem.enqueued_at < enqueued_before,
            )
            .order_by(InboundItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:  # this round's: another sweeper does not take them too
            session.execute(
                update(InboundItem)
                .where(InboundItem.id.in_([row.id for row in rows]))
                .values(enqueued_at=now)
            )
    sent: list[int] = []
    try:
        for row in rows:
            enqueue(row.channel, row.id)
            sent.append(row.id)
    finally:
        with unit_of_work(sessions) as session:
            if sent:
                session.execute(
                    update(InboundItem)
                    .where(InboundItem.id.in_(sent))
                    .values(resends=InboundItem.resends + 1)
                )
                # ... and, unless an attempt started meanwhile (it moved enqueued_at), its
                # next re-send is pushed back by the quiet re-sends before this one.
                later: dict[int, list[int]] = {}
                for row in rows[: len(sent)]:
                    later.setdefault(row.quiet_resends, []).append(row.id)
                for quiet, ids in later.items():
                    session.execute(
                        update(InboundItem)
                        .where(InboundItem.id.in_(ids), InboundItem.enqueued_at == now)
                        .values(
                            quiet_resends=InboundItem.quiet_resends + 1,
                            enqueued_at=now + quiet_backoff(quiet, backoff),
                        )
                    )
            unsent = [row.id for row in rows[len(sent) :]]
            if unsent:  # due again at the next sweep
                session.execute(
                    update(InboundItem)
                    .where(InboundItem.id.in_(unsent), InboundItem.enqueued_at == now)
                    .values(enqueued_at=enqueued_before - timedelta(microseconds=1))
                )
    return len(sent)


def list_own(
    session: Session, email: str, statuses: Collection[str], notices: bool, limit: int
) -> list[InboundItem]:
    """The e-mail inputs sent by `email` in one of `statuses` (and, with `notices`, the
    processed ones that carry a reason), newest first, without their raw bytes.

    Sent by: the From address processing read (`sender`, stored lower-case), or, when it
    could read none (a From it refused, a failed attempt rolled back), the envelope sender
    the SMTP door kept in `meta["mail_from"]`; compared case-insensitively."""
    email = email.strip().lower()
    envelope = func.lower(InboundItem.meta["mail_from"].as_string())
    wanted: list[ColumnElement[bool]] = [InboundItem.status.in_(list(statuses))]
    if notices:
        wanted.append(
            and_(
                InboundItem.status == InboundStatus.PROCESSED.value,
                InboundItem.reason.is_not(None),
                InboundItem.reason != "",
            )
        )
    return list(
        session.scalars(
            select(InboundItem)
            .options(defer(InboundItem.raw))
            .where(
                InboundItem.channel == "email",
                or_(
                    InboundItem.sender == email,
                    and_(InboundItem.sender.is_(None), envelope == email),
                ),
                or_(*wanted),
            )
            .order_by(InboundItem.received_at.desc(), InboundItem.id.desc())
            .limit(limit)
        )
    )


def raw_heads(session: Session, ids: Collection[int], size: int) -> dict[int, bytes]:
    """The first `size` bytes of each item's raw input (b"" once retention deleted it):
    enough for its headers, without reading whole messages out of the database."""
    if not ids:
        return {}
    head = func.substr(InboundItem.raw, 1, size, type_=LargeBinary)
    rows = session.execute(select(InboundItem.id, head).where(InboundItem.id.in_(list(ids))))
    return {item_id: bytes(data or b"") for item_id, data in rows}
