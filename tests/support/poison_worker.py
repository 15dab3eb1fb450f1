"""A worker process whose e-mail processing kills it (SIGKILL) every time: the input that
brings a worker down, for tests/ingest/test_inbound_lifecycle.py. Run as
`python -m tests.support.poison_worker` with the same CRM_* environment as `crm-ingest worker`.
"""

from __future__ import annotations

import os
import signal
import threading

from sqlalchemy.orm import Session, sessionmaker

from ingest.pipeline import AttemptBookkeeping, build_broker, declare_actors
from ingest.runtime import build_runtime
from ingest.settings import load_settings


def die(_sessions: sessionmaker[Session], _inbound_id: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    runtime = build_runtime(load_settings())
    broker = build_broker(
        runtime.settings.broker_url,
        runtime.settings.broker_namespace,
        bookkeeping=AttemptBookkeeping(runtime.figures),
    )
    pipeline = declare_actors(
        broker,
        runtime.sessions,
        runtime.settings.max_attempts,
        processors={"email": die},
    )
    running = pipeline.start_worker(threads=1, poll_ms=100)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    running.stop()
    runtime.close()


if __name__ == "__main__":
    main()
