"""Shared fixtures: free ports, a synthetic sample, and nodes run as real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from bench.peers import NGINX_RTMP_MODULE, NodeAddresses, serve_command, serve_env, wait_port
from bench.peers import free_port as bench_free_port

REPO = Path(__file__).resolve().parent.parent
TEST_AK = "AKLTtestaccesskeyid00000000"
TEST_SK = "dGVzdHNlY3JldGFjY2Vzc2tleTAwMDAwMDAwMDAwMA=="

# pytest-xdist workers start with COLUMNS=80 and LINES=24 in their environment; a rich
# Console built at import would fix its width at 80 and fold the CLI's tables, where a
# serial run (no COLUMNS) follows each test's own COLUMNS. Workers behave like a serial run.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


def free_port() -> int:
    """A free loopback port for a server a test starts: below the ephemeral range, from
    this xdist worker's own slice (bench.peers.free_port says why)."""
    return bench_free_port()


T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `predicate` (blocking) until it returns something true, and return that; fail
    naming `what` once `timeout` s have passed (bounded: about timeout/interval polls)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def poll_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02
) -> float:
    """The same on a test's event loop: the time.monotonic() at which `predicate` was first
    seen true; fails naming `what` once `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def in_ci() -> bool:
    """CI=true (GitHub Actions, GitLab and most CI systems set it): a missing tool is a failure."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_tool(name: str, *, path: Path | None = None, install: str) -> str:
    """The tool `name` (and the file `path` it needs, e.g. a module), or skip the test
    that asked; under CI=true fail instead, so a CI run cannot pass by skipping."""
    found = shutil.which(name)
    if found is None or (path is not None and not path.exists()):
        message = f"{name} is not installed{f' with {path}' if path else ''} ({install})"
        if in_ci():
            pytest.fail(f"{message}; CI=true, so this fails instead of skipping")
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def nginx_rtmp() -> str:
    """nginx with the RTMP module (a foreign origin/edge in tests); use it through `needs_nginx_rtmp`."""
    return require_tool("nginx", path=NGINX_RTMP_MODULE, install="apt-get install nginx libnginx-mod-rtmp")


# Mark a test that needs nginx-rtmp: it alone is skipped (failed under CI) when nginx-rtmp is missing.
needs_nginx_rtmp = pytest.mark.usefixtures("nginx_rtmp")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true every skip is a failure, whatever raised it (skipif, pytest.skip, a
    fixture): tests may skip only for a missing tool, and CI must have every tool."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (tests may not skip in CI): {report.longrepr}"


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it (apt-get install ffmpeg)")
    return path


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    return require_binary("ffmpeg")


@pytest.fixture(scope="session")
def ffprobe() -> str:
    return require_binary("ffprobe")


def synthetic_source_args(
    ffmpeg: str, *, size: str, rate: int, seconds: float, audio_rate: int | None = None
) -> list[str]:
    """The first half of an ffmpeg command that encodes a synthetic clip: a testsrc2 picture
    of `size` at `rate` fps (plus a 440 Hz tone at `audio_rate` Hz) for `seconds`, quietly,
    overwriting the output. Append the encoder options, the format and the output path."""
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio_rate is not None:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={audio_rate}"]
    return [*args, "-t", str(seconds)]


@pytest.fixture(scope="session")
def sample_flv(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """10 s of 640x360@30 H.264 (2 s GOP, no B-frames) + AAC 44.1 kHz, as FLV."""
    out = tmp_path_factory.mktemp("sample") / "sample.flv"
    subprocess.run(
        [
            *synthetic_source_args(ffmpeg, size="640x360", rate=30, seconds=10, audio_rate=44100),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-bf",
            "0",
            "-b:v",
            "800k",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "flv",
            str(out),
        ],
        check=True,
        timeout=120,
    )
    return out


@dataclass
class NodeProcess(NodeAddresses):
    proc: subprocess.Popen[bytes]
    data_dir: Path
    api_port: int
    http_port: int
    rtmp_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_node(
    data_dir: Path,
    *,
    extra_env: dict[str, str] | None = None,
    config: str | None = None,
    ports: tuple[int, int, int] | None = None,
    rtmp_host: str = "127.0.0.1",
) -> NodeProcess:
    """Run `liverelay serve` as a subprocess with the test key pair ensured. `rtmp_host`
    is where the RTMP listener binds (0.0.0.0: a public listener, still reached through
    127.0.0.1 by the URLs of NodeProcess)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    api_port, http_port, rtmp_port = ports or (free_port(), free_port(), free_port())
    cfg = None
    if config is not None:
        cfg = data_dir / "node.toml"
        cfg.write_text(config)
    args = serve_command(data_dir, (api_port, http_port, rtmp_port), config_file=cfg, rtmp_host=rtmp_host)
    env = serve_env(TEST_AK, TEST_SK, extra_env)
    log_path = data_dir / f"node-{api_port}.log"
    log_file = log_path.open("ab")
    proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    log_file.close()
    node = NodeProcess(proc, data_dir, api_port, http_port, rtmp_port, log_path)
    try:
        for port in (api_port, http_port, rtmp_port):
            wait_port(port, timeout=20)
    except TimeoutError:
        node.kill()
        raise AssertionError(f"node did not start:\n{node.log()}") from None
    return node


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[object]:
    """Start nodes as subprocesses; all are stopped at teardown."""
    started: list[NodeProcess] = []

    def factory(name: str = "node", **kwargs: object) -> NodeProcess:
        n = start_node(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        started.append(n)
        return n

    yield factory
    for n in started:
        n.kill(signal.SIGTERM)


@pytest.fixture
def node(node_factory: object) -> NodeProcess:
    return node_factory()  # type: ignore[operator]


def run_liverelay(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m liverelay ARGS` to the end, with no LIVERELAY_*/ACCESS_KEY_* from the outer
    environment (only `env`); output captured as text."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LIVERELAY_", "ACCESS_KEY_"))}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "liverelay", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean,
        cwd=REPO,
    )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s if the process is still there; waits for it either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def ffmpeg_publish(
    ffmpeg_bin: str, sample: Path, url: str, *, loop: bool = True, extra: list[str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Publish `sample` in real time to an RTMP URL; stopped on exit."""
    args = [ffmpeg_bin, "-hide_banner", "-loglevel", "error", "-re"]
    if loop:
        args += ["-stream_loop", "-1"]
    args += ["-i", str(sample), "-c", "copy", *(extra or []), "-f", "flv", url]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        stop_process(proc)
        if proc.stderr:
            proc.stderr.close()


# The real PostgreSQL of the store tests (session server + a database per test).
from tests.pgserver import pg_url, postgres_server  # noqa: E402, F401
