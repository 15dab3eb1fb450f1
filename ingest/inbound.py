"""The inbound store, the pipeline's first stage: every raw input kept durably before a
front door says yes. Doors `store` (or `submit`, from an event loop) through their runtime's
`GroupCommit`, which gathers concurrent inputs into one commit; then `pipeline.send_stored`.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from crm_core.db import unit_of_work
from crm_core.models import InboundItem, InboundStatus, utcnow
from ingest import metrics
from ingest.errors import StoreUnavailable


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


Waiting = tuple[list[NewInput], Future[list[int]]]


class GroupCommit:
    """Group commit for the front doors: the inputs of every request that arrives while a
    commit is running go into the next one, together. A commit waits for the disk (the WAL
    flush), so many small ones in a row are what limits a door; one per group is not.
    Nobody is answered before the commit that holds their input is done, and a failed
    commit fails every request in it (each front door then says "try later").

    Built by the runtime (one per database); its thread starts at the first input and stops
    at `close` (an input submitted after that starts a new one)."""

    MAX_INPUTS = 500

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._lock = threading.Lock()
        self._waiting: queue.SimpleQueue[Waiting] | None = None

    def submit(self, inputs: list[NewInput]) -> Future[list[int]]:
        done: Future[list[int]] = Future()
        with self._lock:
            if self._waiting is None:
                self._waiting = queue.SimpleQueue()
                threading.Thread(
                    target=self._run, args=(self._waiting,), name="group-commit", daemon=True
                ).start()
            self._waiting.put((inputs, done))
        return done

    def close(self) -> None:
        """Stop the thread once the inputs already submitted are committed."""
        with self._lock:
            if self._waiting is not None:
                self._waiting.put(_STOP)
                self._waiting = None

    def _run(self, waiting: queue.SimpleQueue[Waiting]) -> None:
        while True:
            first = waiting.get()
            if first is _STOP:
                return
            group = [first]
            size = len(group[0][0])
            while size < self.MAX_INPUTS:
                try:
                    more = waiting.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    waiting.put(_STOP)  # after this group
                    break
                group.append(more)
                size += len(group[-1][0])
            try:
                ids = _store_once(self.sessions, [new for inputs, _ in group for new in inputs])
            except BaseException as exc:  # every waiter learns why; the thread goes on
                for _, done in group:
                    done.set_exception(exc)
                continue
            start = 0
            for inputs, done in group:
                done.set_result(ids[start : start + len(inputs)])
                start += len(inputs)


_STOP: Waiting = ([], Future())


# A concurrent front door may store some of the same inputs between our lookup and our
# insert (two doors given one mail, a batch of copies): the insert then fails once that
# door has committed, and the next try finds its rows. Each try so learns of at least one
# other door's commit; past this many, the sender is told to try later (451 / 503).
STORE_TRIES = 8


def _store_once(sessions: sessionmaker[Session], inputs: list[NewInput]) -> list[int]:
    for attempt in range(STORE_TRIES):
        try:
            return _store(sessions, inputs)
        except IntegrityError as exc:
            if attempt == STORE_TRIES - 1:
                raise StoreUnavailable(str(exc)) from exc
        except SQLAlchemyError as exc:
            raise StoreUnavailable(str(exc)) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _store(sessions: sessionmaker[Session], inputs: list[NewInput]) -> list[int]:
    """Two statements whatever the number of inputs: the keys already stored, then one
    multi-row INSERT ... RETURNING for the others (each key once)."""
    now = utcnow()
    with unit_of_work(sessions) as session:
        keys = list(dict.fromkeys(new.dedupe_key for new in inputs))
        found: dict[str, int] = {
            key: item_id
            for key, item_id in session.execute(
                select(InboundItem.dedupe_key, InboundItem.id).where(
                    InboundItem.dedupe_key.in_(keys)
                )
            )
        }
        fresh: dict[str, dict[str, Any]] = {}
        for new in inputs:
            if new.dedupe_key in found or new.dedupe_key in fresh:
                continue
            rejected = new.rejected is not None
            fresh[new.dedupe_key] = {
                "channel": new.channel,
                "raw": new.raw,
                "dedupe_key": new.dedupe_key,
                "recipient": new.recipient,
                "meta": new.meta,
                "received_at": now,
                "enqueued_at": now,
                "status": (InboundStatus.REJECTED if rejected else InboundStatus.RECEIVED).value,
                "reason": new.rejected,
                "finished_at": now if rejected else None,
            }
        if fresh:
            inserted = session.execute(
                insert(InboundItem).returning(InboundItem.dedupe_key, InboundItem.id),
                list(fresh.values()),
            )
            found.update({key: item_id for key, item_id in inserted})
            metrics.stored(session, fresh.values())  # counted once the commit is done
    return [found[new.dedupe_key] for new in inputs]
