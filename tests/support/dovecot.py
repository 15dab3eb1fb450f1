"""A real Dovecot IMAP server for the tests (Debian's dovecot-imapd, installed by
`scripts/test`): its own configuration, port and mail directory, on loopback, plain text
login allowed there only. One server per test session, one fresh user per test.
"""

from __future__ import annotations

import contextlib
import imaplib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
default_internal_user = dovecot
default_login_user = dovenull
auth_cache_size = 0
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
"""


class Dovecot:
    def __init__(self) -> None:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not Path(binary).exists():
            raise RuntimeError(
                "dovecot is not installed: scripts/test installs Debian's dovecot-imapd"
            )
        self.root = Path(tempfile.mkdtemp(prefix="crm-dovecot-"))
        self.root.chmod(0o755)  # the mail processes run as nobody
        (self.root / "mail").mkdir()
        shutil.chown(self.root / "mail", "nobody", "nogroup")
        # Every user is written before the start: Dovecot rereads a changed passwd-file
        # only when its mtime moves, which two quick additions within a second may not do.
        self._users = [(f"u{n:03d}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex) for n in range(64)]
        (self.root / "passwd").write_text(
            "".join(f"{name}:{{PLAIN}}{password}::::::\n" for name, password in self._users)
        )
        self.port = _free_port()
        config = self.root / "dovecot.conf"
        config.write_text(CONFIG.format(root=self.root, port=self.port))
        self.process = subprocess.Popen(
            [binary, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"dovecot did not start: {error}{self.log()}")
            time.sleep(0.05)

    def add_user(self) -> tuple[str, str]:
        """A mail user no test had yet, with an empty INBOX: (name, password)."""
        return self._users.pop()

    @contextlib.contextmanager
    def client(self, user: tuple[str, str]) -> Iterator[imaplib.IMAP4]:
        """The test's own IMAP session (the stdlib's client, not the poller's library)."""
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        try:
            imap.login(*user)
            yield imap
        finally:
            with contextlib.suppress(Exception):
                imap.logout()

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


class Proxy:
    """A TCP relay to the server whose connections a test can cut, as a restarting server or
    a NAT timeout would (without an IMAP BYE)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def append(imap: imaplib.IMAP4, folder: str, raw: bytes) -> int:
    """APPEND a message; its UID (Dovecot answers APPENDUID, RFC 4315)."""
    status, data = imap.append(folder, None, None, raw)
    assert status == "OK", data
    text = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
    return int(text.split("APPENDUID ", 1)[1].split()[1].rstrip("]"))


def flags(imap: imaplib.IMAP4, folder: str) -> dict[int, str]:
    """UID -> its flags, for every message of the folder."""
    imap.select(folder)
    status, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    assert status == "OK", data
    found: dict[int, str] = {}
    for line in data:
        if not isinstance(line, bytes):
            continue
        text = line.decode()
        uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
        found[uid] = text.split("FLAGS (", 1)[1].split(")", 1)[0]
    return found
