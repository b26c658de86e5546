"""A real PostgreSQL for the tests: Debian's initdb + pg_ctl in a temporary directory.

One server per test session on a free loopback port, its unix socket in the same
temporary directory, run as the `postgres` system user when the tests run as root
(PostgreSQL refuses to run as root). Each test gets its own database. The server is
stopped by its PID at the end; nothing here uses a system-wide PostgreSQL service.
A missing PostgreSQL skips, or fails under CI=true (the test command installs it:
scripts/ensure-sysdeps.sh).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STOP_TIMEOUT_S = 30.0

# A watchdog process per server: when the test process dies without its teardown (killed,
# or a crash), the watchdog stops the server by its PID and removes its directory, so an
# interrupted run leaves no PostgreSQL behind. It ends with the server either way.
_WATCHDOG = """
import os, shutil, signal, sys, time
parent, server, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
for _ in range(7 * 24 * 3600):  # bounded: a week of one-second checks
    if not alive(server):
        sys.exit(0)
    if not alive(parent) or os.getppid() != parent:
        break
    time.sleep(1.0)
else:
    sys.exit(0)
try:
    os.kill(server, signal.SIGINT)
except ProcessLookupError:
    pass
for _ in range(300):
    if not alive(server):
        break
    time.sleep(0.1)
else:
    try:
        os.kill(server, signal.SIGKILL)
    except ProcessLookupError:
        pass
shutil.rmtree(root, ignore_errors=True)
"""


def pg_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb and pg_ctl."""
    found = [
        p
        for p in Path("/usr/lib/postgresql").glob("*/bin")
        if (p / "initdb").exists() and (p / "pg_ctl").exists() and p.parent.name.isdigit()
    ]
    return max(found, key=lambda p: int(p.parent.name)) if found else None


def require_postgres() -> Path:
    """The binaries' directory; skip without them (fail under CI=true)."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL is not installed; `make test` installs it (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return bin_dir


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="liverelay-pg-")))
    port: int = 0  # a free one at start()
    pid: int | None = None
    _watchdog: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def _user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            user=self._user(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            cwd=self.root,
        )

    def init(self) -> None:
        user = self._user()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",  # only the cluster's creation; the server itself fsyncs as usual
        )

    def start(self) -> None:
        # Imported here: tests/conftest.py imports this module's fixtures.
        from tests.conftest import free_port, wait_port

        self.port = self.port or free_port()
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        self.pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        wait_port(self.port, timeout=30)
        self._start_watchdog(self.pid)

    def _start_watchdog(self, server_pid: int) -> None:
        if self._watchdog is not None and self._watchdog.poll() is None:
            self._watchdog.kill()  # it watched the previous server process (a restart)
            self._watchdog.wait(timeout=10)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(server_pid), str(self.root)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not in the test run's process group: it outlives a kill of it
        )

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT = fast shutdown (SIGKILL to simulate a crash); waits until the PID is gone."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # A killed postmaster leaves children for a moment; the next start needs the pid file gone.
        if sig == signal.SIGKILL:
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            str(self.bin_dir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atqc",
            sql,
        ).stdout

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def cleanup(self) -> None:
        self.stop()
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait(timeout=10)
            self._watchdog = None
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(require_postgres())
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """postgresql://... of an empty database of its own."""
    return postgres_server.new_database()
