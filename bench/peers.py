"""The servers under test, run as subprocesses: nginx-rtmp and our node.

Every process started here is registered, so `kill_all()` (called from the CLI's
finally and atexit) stops whatever is still running, even after Ctrl-C.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parent.parent
NGINX_RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
# Keys our node is started with (through ACCESS_KEY_ID/ACCESS_KEY_SECRET) and the SDK signs with.
BENCH_AK = "AKLTbenchaccesskeyid0000000"
BENCH_SK = "YmVuY2hzZWNyZXRhY2Nlc3NrZXkwMDAwMDAwMDAwMDA="

_live: list[ManagedProcess] = []


# Listening ports for the servers the benches and tests start come from below the kernel's
# ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default): a port found by
# bind(0) lies inside it, and any outgoing connection of the machine (a viewer, a pull, an
# attack socket) may take it as its local port before the server binds it ("address
# already in use"); a port below the range is never handed out that way. Each pytest-xdist
# worker walks a slice of its own, so workers never pick the same port, and a process walks
# its slice in order from a random start, so a port just released is not picked again soon.
_PORT_FLOOR = 10000
_port_cursor: int | None = None


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_slice() -> range:
    ceiling = _ephemeral_low()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or "1"), index + 1)
    size = (ceiling - _PORT_FLOOR) // count
    if size < 100:  # an unusual port range: fall back to the kernel's choice
        return range(0)
    start = _PORT_FLOOR + index * size
    return range(start, start + size)


def free_port() -> int:
    """A loopback TCP port nothing is bound to now (see above for where it comes from)."""
    global _port_cursor
    ports = _port_slice()
    if ports:
        if _port_cursor is None:
            _port_cursor = random.randrange(len(ports))
        for _ in range(len(ports)):
            port = ports[_port_cursor % len(ports)]
            _port_cursor += 1
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None, host: str = "127.0.0.1"
) -> None:
    """Until something accepts a connection on host:port (tests and benches); fails at once
    when `proc`, the process meant to listen there, has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def metric(text: str, name: str) -> float:
    """The value of one sample line of a Prometheus text exposition, e.g. a node's /metrics
    (0 when absent); `name` includes its labels, if any."""
    for line in text.splitlines():
        if not line.startswith("#") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@dataclass
class ManagedProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path | None = None

    @classmethod
    def spawn(
        cls,
        name: str,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        out = log_path.open("ab") if log_path else subprocess.DEVNULL
        try:
            # A new session: a Ctrl-C in the terminal reaches only us; we stop children ourselves.
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            if log_path:
                out.close()  # type: ignore[union-attr]
        mp = cls(name, proc, log_path)
        _live.append(mp)
        return mp

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the process and wait for it (without a graceful fallback)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; also kills anything left in its process group."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # helpers it spawned (ffmpeg relays)
        if self in _live:
            _live.remove(self)

    def log_tail(self, n: int = 30) -> str:
        if self.log_path and self.log_path.exists():
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


def kill_all() -> None:
    for mp in list(_live):
        with contextlib.suppress(Exception):
            mp.stop(timeout=2)


atexit.register(kill_all)


def nginx_conf(workdir: Path, rtmp_port: int, http_port: int, pulls: list[str], hls: bool = False) -> str:
    """One worker, master_process off, chunk_size 4096, everything else default (as the anchors).

    With `hls`, the live application also writes HLS (2 s fragments = one GOP) served
    at http://127.0.0.1:HTTP/hls/STREAM.m3u8: an origin for ffmpeg-backed HLS relays.
    """
    pull_line = "".join(f"            pull {p};\n" for p in pulls)
    if hls:
        pull_line += (
            f"            hls on;\n            hls_path {workdir / 'hls'};\n            hls_fragment 2s;\n"
        )
    hls_location = (
        # HLS fan-out compares against nginx serving its fragments the way it is deployed.
        "        sendfile on;\n        tcp_nopush on;\n"
        f"        location /hls/ {{\n            root {workdir};\n"
        "            types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }\n"
        "            add_header Cache-Control no-cache;\n        }\n"
    )
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"    {kind}_temp_path {workdir / kind};" for kind in kinds)
    return f"""load_module {NGINX_RTMP_MODULE};
master_process off;
daemon off;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{
    worker_connections 8192;
}}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
{pull_line}        }}
    }}
}}
http {{
    access_log off;
{temp}
    server {{
        listen 127.0.0.1:{http_port};
{hls_location}        location / {{ return 404; }}
    }}
}}
"""


class PeerProcess:
    """What a server under test (NginxRtmp, LiverelayNode) shares: one managed process in
    a work directory of its own, removed with it; a context manager (start .. stop)."""

    workdir: Path
    process: ManagedProcess | None

    def start(self) -> Self:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process:
            self.process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class NginxRtmp(PeerProcess):
    """nginx-rtmp as origin (no pulls) or as edge (pulls=['rtmp://127.0.0.1:ORIGIN/live', ...])."""

    pulls: list[str] = field(default_factory=list)
    hls: bool = False
    rtmp_port: int = 0
    http_port: int = 0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-nginx-")))
    process: ManagedProcess | None = None
    name: str = "nginx-rtmp"

    def start(self) -> Self:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not NGINX_RTMP_MODULE.exists():
            raise RuntimeError(f"{NGINX_RTMP_MODULE} missing (apt-get install libnginx-mod-rtmp)")
        self.rtmp_port = self.rtmp_port or free_port()
        self.http_port = self.http_port or free_port()
        conf = self.workdir / "nginx.conf"
        conf.write_text(nginx_conf(self.workdir, self.rtmp_port, self.http_port, self.pulls, self.hls))
        args = [nginx, "-p", str(self.workdir), "-e", str(self.workdir / "error.log"), "-c", str(conf)]
        self.process = ManagedProcess.spawn(self.name, args, log_path=self.workdir / "stdout.log")
        wait_port(self.rtmp_port, proc=self.process.proc)
        return self

    def rtmp_url(self, app: str, stream: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{stream}"

    def hls_url(self, stream: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/hls/{stream}.m3u8"


@contextlib.contextmanager
def python_path(src: Path | str | None) -> Iterator[None]:
    """Children started inside run our package from the `src` directory of another tree
    (None: this tree): PYTHONPATH for this process, which LiverelayNode passes on, put back
    as it was afterwards (before/after runs in one sitting)."""
    old = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = str(src)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def serve_command(
    data_dir: Path,
    ports: tuple[int, int, int],
    *,
    config_file: Path | None = None,
    rtmp_host: str = "127.0.0.1",
) -> list[str]:
    """The `python -m liverelay serve` command line of a bench or test node: `ports` are
    (API, HTTP media, RTMP), each listener on loopback (the RTMP one on `rtmp_host`)."""
    api_port, http_port, rtmp_port = ports
    args = [
        sys.executable,
        "-m",
        "liverelay",
        "serve",
        "--data-dir",
        str(data_dir),
        "--api-listen",
        f"127.0.0.1:{api_port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
        "--rtmp-listen",
        f"{rtmp_host}:{rtmp_port}",
    ]
    if config_file is not None:
        args += ["--config", str(config_file)]
    return args


def serve_env(
    access_key_id: str, access_key_secret: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of such a node: ours without LIVERELAY_* (no outer setting leaks
    in), the API key pair it is started with, unbuffered output for its log, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVERELAY_")}
    env.update(
        {"ACCESS_KEY_ID": access_key_id, "ACCESS_KEY_SECRET": access_key_secret, "PYTHONUNBUFFERED": "1"}
    )
    env.update(extra or {})
    return env


class NodeAddresses:
    """Where a node started by serve_command is reached (every listener through 127.0.0.1)."""

    api_port: int
    http_port: int
    rtmp_port: int

    @property
    def api_host(self) -> str:
        return f"127.0.0.1:{self.api_port}"

    def rtmp_url(self, app: str, stream: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{stream}"

    def flv_url(self, app: str, stream: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/{app}/{stream}.flv"

    def hls_url(self, app: str, stream: str, *, low_latency: bool = False) -> str:
        """The classic HLS (MPEG-TS) master playlist, or the LL-HLS (fMP4) one."""
        tail = f"{stream}/index.m3u8" if low_latency else f"{stream}.m3u8"
        return f"http://127.0.0.1:{self.http_port}/{app}/{tail}"


@dataclass
class LiverelayNode(NodeAddresses, PeerProcess):
    """Our node: `python -m liverelay serve` with its own data dir and the bench key pair."""

    config: str | None = None  # TOML text
    name: str = "liverelay"
    api_port: int = 0
    http_port: int = 0
    rtmp_port: int = 0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-node-")))
    process: ManagedProcess | None = None
    start_timeout_s: float = 30.0

    def start(self) -> Self:
        self.api_port = self.api_port or free_port()
        self.http_port = self.http_port or free_port()
        self.rtmp_port = self.rtmp_port or free_port()
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        cfg = None
        if self.config is not None:
            cfg = self.workdir / "node.toml"
            cfg.write_text(self.config)
        args = serve_command(data, (self.api_port, self.http_port, self.rtmp_port), config_file=cfg)
        env = serve_env(BENCH_AK, BENCH_SK)
        log = self.workdir / "node.log"
        self.process = ManagedProcess.spawn(self.name, args, env=env, log_path=log, cwd=REPO)
        try:
            for port in (self.api_port, self.http_port, self.rtmp_port):
                wait_port(port, timeout=self.start_timeout_s, proc=self.process.proc)
        except (TimeoutError, RuntimeError) as exc:
            tail = self.process.log_tail()
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {exc}\n{tail}") from None
        return self

    def log_tail(self, n: int = 30) -> str:
        return self.process.log_tail(n) if self.process else ""
