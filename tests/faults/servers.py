"""The fault suite's own servers and processes: a dedicated PostgreSQL cluster and
redis-server on free loopback ports (never the machine's 5432/6379, which other test runs
share), and the `crm-ingest` processes of one deployment, each of which can be killed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.helpers import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it if the test process dies (Linux prctl), so an
    interrupted run leaves no server or worker behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
            return str(candidate)
        raise RuntimeError(f"the fault suite needs `{name}` on PATH")
    return found


class PostgresCluster:
    """A throwaway cluster (initdb) in a temporary directory, trust auth on 127.0.0.1.

    PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user
    (runuser), and the directory is made theirs."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="crm-faults-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgres.log"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.sockets.mkdir()
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run(
            _binary("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self._as, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
        self._run(
            _binary("pg_ctl"), action, "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", *extra,
        )  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        """A crash-like restart: `-m immediate` stops without a checkpoint (startup then
        replays the WAL), every open connection is cut."""
        self._ctl("restart", "-m", "immediate")

    def stop(self) -> None:
        """A clean stop (`-m fast`): open transactions are rolled back, sessions cut."""
        self._ctl("stop", "-m", "fast")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """A redis-server keeping nothing on disk: killed and started again, it is empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                _binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        wait_for(self.answers, timeout=30, what=f"redis-server on port {self.port}")

    def answers(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn,
        ):
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
        return False

    def kill(self) -> None:
        """SIGKILL: everything it held (queues, in-flight acks, delayed retries) is lost."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def close(self) -> None:
        self.kill()


class Deployment:
    """`crm-ingest` processes sharing one database and one broker, started by name; each
    writes its log to `logs/<name>.log`."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env}
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self._count = 0

    def run(self, *args: str, timeout: float = 120) -> None:
        """A command that ends (e.g. `migrate`)."""
        subprocess.run(
            [sys.executable, "-m", "ingest.cli", *args], env=self.env, check=True, timeout=timeout
        )

    def start(self, command: str) -> str:
        """Start `crm-ingest <command>`; return its name (e.g. "worker-3")."""
        self._count += 1
        name = f"{command}-{self._count}"
        with (self.logs / f"{name}.log").open("wb") as log:
            self.running[name] = subprocess.Popen(
                [sys.executable, "-m", "ingest.cli", command],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        return name

    def log_lines(self, command: str, containing: str) -> int:
        """Lines containing `containing` in the logs of every `command` process so far."""
        return sum(
            line.count(containing)
            for path in self.logs.glob(f"{command}-*.log")
            for line in path.read_text(errors="replace").splitlines()
        )

    def kill(self, name: str) -> None:
        """kill -9: no shutdown of any kind (its prefetched messages stay unacknowledged)."""
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def names(self, command: str) -> list[str]:
        return [name for name in self.running if name.rpartition("-")[0] == command]

    def alive(self) -> dict[str, int | None]:
        return {name: process.poll() for name, process in self.running.items()}

    def stop(self, name: str) -> int:
        process = self.running.pop(name)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=60)

    def close(self) -> dict[str, int]:
        """SIGTERM to all; the exit codes (0 = a clean stop)."""
        codes = {}
        for name in list(self.running):
            try:
                codes[name] = self.stop(name)
            except subprocess.TimeoutExpired:
                self.kill(name)
                codes[name] = -9
        return codes


def settle(seconds: float) -> None:
    """Let the load run (this is the pace of the scenario, not a measurement)."""
    time.sleep(seconds)
