"""The change feed in-process: two Stores on one real PostgreSQL (as two nodes would be).

What one Store commits arrives on the other's ChangeBus with the stored records (the
same final state per key); a gap in the change numbers and a reconnect resync fully.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from tests.pgserver import PostgresServer

from liverelay.config import Settings
from liverelay.store import ChangeEvent, RelayGroup, RelayServer, Store, StoreUnavailable, open_store
from liverelay.store.postgres import CHANNEL, asyncpg_dsn

BOUND_S = 10.0


@pytest.fixture
async def pair(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    settings = Settings(data_dir=tmp_path, database_url=pg_url, database_keepalive_s=0.5)
    a = await open_store(settings)
    b = await open_store(settings)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(BOUND_S):
        while not predicate():
            await asyncio.sleep(0.01)
    assert predicate(), what


def _group(name: str, address: str) -> RelayGroup:
    return RelayGroup(name, (RelayServer("rtmp", address, {"k": "v"}),))


async def test_other_stores_writes_reach_the_same_state(pair: tuple[Store, Store]) -> None:
    a, b = pair
    on_a: list[tuple[str, str, object, object]] = []
    on_b: list[tuple[str, str, object, object]] = []
    a.bus.subscribe(lambda e: on_a.append((e.entity, e.op, e.key, e.value)))
    b.bus.subscribe(lambda e: on_b.append((e.entity, e.op, e.key, e.value)))
    await a.add_domains("vh", [("a.example.com", "push", "cn")])
    await a.put_relay_v3("vh", "live", [_group("g", "x")])
    await a.put_relay_v3("vh", "live", [_group("g", "y")])
    await a.create_relay_v4(
        "vh", "live", "s", domain="a.example.com", src_addrs=["rtmp://x"], start_time=None, end_time=None
    )
    await a.update_relay_v4("vh", "live", "s", src_addrs=["rtmp://y"], start_time=5, end_time=10)
    await a.delete_relay_v4("vh", "live", "s")
    await a.delete_relay_v3("vh", "live")
    await a.update_domain("a.example.com", status=2)

    def last_by_key(events: list[tuple[str, str, object, object]]) -> dict[tuple[str, object], object]:
        return {(entity, key): value for entity, _, key, value in events}

    # B reads each row when the notification arrives: when A has moved on meanwhile, B
    # publishes the newer state at once and skips the intermediate one. So: the same final
    # state per key, and never a state A did not have.
    await wait_for(lambda: last_by_key(on_b) == last_by_key(on_a), f"B to reach A's state, has {on_b}")
    seen_on_a = {(entity, key, repr(value)) for entity, _, key, value in on_a}
    assert all((entity, key, repr(value)) in seen_on_a for entity, _, key, value in on_b), on_b
    assert [e[:3] for e in on_b if e[1] == "deleted"] == [e[:3] for e in on_a if e[1] == "deleted"]
    assert b.domain_table.get("a.example.com") == a.domain_table.get("a.example.com")
    assert b.domain_table.vhost_for("a.example.com") is None  # disabled on A -> on B too
    assert b.feed is not None and b.feed.counters.resyncs == 0


async def test_gap_in_change_numbers_resyncs(pair: tuple[Store, Store], pg_url: str) -> None:
    a, b = pair
    assert b.feed is not None
    events: list[ChangeEvent] = []
    b.bus.subscribe(events.append)
    await a.put_relay_v3("vh", "one", [_group("g", "x")])
    await wait_for(lambda: len(events) == 1, "the first change on B")
    # A notification numbered past the next one: B missed some, whatever they were.
    conn = await asyncpg.connect(asyncpg_dsn(pg_url))
    try:
        await conn.execute(
            "UPDATE relay_v3 SET groups_json = $1 WHERE app = 'one'", '[{"name":"q","servers":[]}]'
        )
        await conn.execute(
            "SELECT pg_notify($1, $2)", CHANNEL, f'{{"seq": {b.feed.last_seq + 5}, "origin": "elsewhere"}}'
        )
    finally:
        await conn.close()
    await wait_for(lambda: b.feed is not None and b.feed.counters.resyncs == 1, "a resync on B")
    await wait_for(lambda: len(events) == 2, "the resync's event")
    assert events[1].op == "updated" and events[1].value.groups[0].name == "q"


async def test_reconnect_after_restart_resyncs(
    pair: tuple[Store, Store], postgres_server: PostgresServer
) -> None:
    a, b = pair
    assert b.feed is not None
    await a.put_relay_v3("vh", "before", [_group("g", "x")])
    await wait_for(lambda: b.feed is not None and b.feed.last_seq >= 1, "B to follow")
    await asyncio.to_thread(postgres_server.stop)
    try:
        await wait_for(lambda: b.feed is not None and not b.feed.connected, "B to notice the outage")
        with pytest.raises(StoreUnavailable):
            await a.put_relay_v3("vh", "during", [_group("g", "x")])
    finally:
        await asyncio.to_thread(postgres_server.start)
    await wait_for(lambda: b.feed is not None and b.feed.connected, "B to reconnect")
    assert b.feed.counters.reconnects >= 1 and b.feed.counters.resyncs >= 1
    async with asyncio.timeout(BOUND_S):
        while True:
            try:
                await a.put_relay_v3("vh", "after", [_group("g", "y")])
                break
            except StoreUnavailable:  # A's pool may still hold a broken connection for a moment
                await asyncio.sleep(0.2)
    await wait_for(
        lambda: b.feed is not None and ("relay_v3", ("vh", "after")) in b.feed.picture, "after on B"
    )
    assert {c.app for c in await b.list_relay_v3("vh")} == {"before", "after"}


async def test_read_modify_writes_of_two_stores_do_not_lose_each_other(pair: tuple[Store, Store]) -> None:
    """Group removal and domain changes lock the row: two stores changing different parts
    at the same moment both take effect (20 rounds)."""
    a, b = pair
    await a.add_domains("vh", [("d.example.com", "push", "cn")])
    for i in range(20):
        app = f"app{i}"
        await a.put_relay_v3("vh", app, [_group("g1", "x"), _group("g2", "y"), _group("g3", "z")])
        removed = await asyncio.gather(a.delete_relay_v3("vh", app, "g1"), b.delete_relay_v3("vh", app, "g2"))
        assert removed == [True, True]
        left = await a.get_relay_v3("vh", app)
        assert left is not None and [g.name for g in left.groups] == ["g3"], f"round {i}: {left}"
        await asyncio.gather(
            a.update_domain("d.example.com", vhost=f"vh{i}"),
            b.update_domain("d.example.com", status=i % 2 * 2),
        )
        [record] = await b.list_domains()
        assert (record.vhost, record.status) == (f"vh{i}", i % 2 * 2), f"round {i}: {record}"
