"""An acknowledged write survives SIGKILL.

Two levels: the store alone (a child process writes through Store and is killed
right after a write returns, or while writes are in flight), and the whole node
(`liverelay serve` killed with SIGKILL after answering signed requests). Each runs on
SQLite and on a real PostgreSQL (tests/pgserver.py); on PostgreSQL the server itself
is also SIGKILLed and restarted before the check.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.conftest import TEST_AK, TEST_SK, start_node
from tests.pgserver import PostgresServer

from liverelay.api.testing import SEED_DOMAINS, SignedClient
from liverelay.config import Settings
from liverelay.store import open_store

REPO = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from liverelay.config import Settings
    from liverelay.store import RelayGroup, RelayServer, open_store

    async def main(data_dir: str, count: int, die_after_last: bool, url: str) -> None:
        store = await open_store(Settings(data_dir=Path(data_dir), database_url=url))
        await store.add_domains("vh", [("pull.example.com", "pull-flv", "cn")])
        print("ACK domain", flush=True)
        for i in range(count):
            await store.create_relay_v4(
                "vh", "live", f"s{i}", domain="pull.example.com", src_addrs=[f"rtmp://o/live/s{i}"],
                start_time=None, end_time=None,
            )
            await store.put_relay_v3("vh", f"app{i}", [RelayGroup("g", (RelayServer("rtmp", f"o{i}"),))])
            print(f"ACK {i}", flush=True)
        if die_after_last:
            # No close(), no flush beyond what the commit did: straight to SIGKILL.
            os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]))
    """
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """'' (SQLite in the data dir) or the URL of a fresh PostgreSQL database."""
    return str(request.getfixturevalue("pg_url")) if request.param == "postgresql" else ""


def _crash_postgres(request: pytest.FixtureRequest, database_url: str) -> None:
    """PostgreSQL: SIGKILL the server and start it again (crash recovery replays the WAL)."""
    if database_url:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        server.stop(signal.SIGKILL)
        server.start()


def _run_writer(data_dir: Path, count: int, die_after_last: bool, url: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir), str(count), "1" if die_after_last else "0", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


async def _stored(data_dir: Path, url: str = "") -> tuple[set[str], set[str], str | None]:
    store = await open_store(Settings(data_dir=data_dir, database_url=url))
    try:
        v4, _ = await store.list_relay_v4("vh")
        v3 = await store.list_relay_v3("vh")
        return {c.stream for c in v4}, {c.app for c in v3}, store.domain_table.vhost_for("pull.example.com")
    finally:
        await store.close()


def test_store_write_survives_sigkill_right_after_it_returns(
    tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> None:
    proc = _run_writer(tmp_path, 5, die_after_last=True, url=database_url)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, err
    acked = [line for line in out.splitlines() if line.startswith("ACK ")]
    assert acked == ["ACK domain"] + [f"ACK {i}" for i in range(5)]
    if not database_url:
        assert (tmp_path / "liverelay.db-wal").exists()  # killed before any checkpoint-on-close
    _crash_postgres(request, database_url)
    streams, apps, vhost = asyncio.run(_stored(tmp_path, database_url))
    assert streams == {f"s{i}" for i in range(5)}
    assert apps == {f"app{i}" for i in range(5)}
    assert vhost == "vh"


def test_store_writes_in_flight_when_killed(
    tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> None:
    """Killed from outside at an arbitrary point: every acknowledged write is there, and
    anything beyond is whole (the next write may or may not have committed)."""
    proc = _run_writer(tmp_path, 10_000, die_after_last=False, url=database_url)
    acked = -1
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ACK ") and line.strip() != "ACK domain":
                acked = int(line.split()[1])
                if acked >= 30:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert acked >= 30
    _crash_postgres(request, database_url)
    streams, apps, _ = asyncio.run(_stored(tmp_path, database_url))
    assert {f"s{i}" for i in range(acked + 1)} <= streams
    assert {f"app{i}" for i in range(acked + 1)} <= apps
    # No gaps: writes commit in order.
    assert streams == {f"s{i}" for i in range(len(streams))}


def _ok(client: SignedClient, action: str, body: dict[str, object]) -> dict[str, object]:
    return client.ok(action, body)


# Written before the SIGKILL; DescribeRelaySourceV3 must return it unchanged afterwards.
V3_CONFIG = {
    "Vhost": "push.example.com",
    "App": "live",
    "GroupDetails": [
        {
            "Group": "relay1",
            "Servers": [
                {
                    "RelaySourceProtocol": "rtmp",
                    "RelaySourceDomain": "127.0.0.1:1",
                    "RelaySourceParams": {"k": "v"},
                }
            ],
        }
    ],
}


def test_node_acknowledged_writes_survive_sigkill(
    tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> None:
    data_dir = tmp_path / "node"
    env = {"LIVERELAY_DATABASE_URL": database_url} if database_url else None
    node = start_node(data_dir, extra_env=env)
    try:
        with SignedClient(node.api_host, TEST_AK, TEST_SK) as client:
            _ok(client, "CreateDomainV2", SEED_DOMAINS)
            _ok(client, "CreateDomain", {"Domain": "solo.example.com", "Type": "push"})
            _ok(client, "UpdateRelaySourceV3", V3_CONFIG)
            task = _ok(
                client,
                "CreateRelaySourceV4",
                {
                    "Domain": "pull.example.com",
                    "App": "live",
                    "Stream": "fixed1",
                    "SrcAddrS": ["rtmp://127.0.0.1:1/live/fixed1"],
                    "StartTime": 1683518058,
                    "EndTime": 1683777258,
                },
            )["TaskId"]
            _ok(client, "DeleteDomain", {"Domain": "solo.example.com"})
        node.kill(signal.SIGKILL)
        assert node.proc.returncode == -signal.SIGKILL
        _crash_postgres(request, database_url)

        node = start_node(data_dir, extra_env=env, ports=(node.api_port, node.http_port, node.rtmp_port))
        with SignedClient(node.api_host, TEST_AK, TEST_SK) as client:
            v3 = _ok(client, "DescribeRelaySourceV3", {"Vhost": "push.example.com"})["RelaySourceConfigList"]
            assert v3 == [V3_CONFIG]  # exactly what was written, params included
            listed = _ok(client, "ListRelaySourceV4", {"Domain": "push.example.com"})
            [item] = listed["List"]  # type: ignore[index]
            assert item["Stream"] == "fixed1" and item["TaskId"] == task and item["StartTime"] == 1683518058
            domains = _ok(client, "ListDomainDetail", {"PageNum": 1, "PageSize": 100})
            assert sorted(d["Domain"] for d in domains["DomainList"]) == [  # type: ignore[attr-defined]
                "pull.example.com",
                "push.example.com",
            ]
    finally:
        node.kill(signal.SIGKILL)
