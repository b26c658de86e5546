"""Store: URL-auth configs on SQLite and a real PostgreSQL - replace whole, ChangeBus events,
and (PostgreSQL) another node's write reaching this node's bus through the change feed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.test_store import store, store_settings  # noqa: F401  (fixtures)

from liverelay.config import Settings
from liverelay.store import AuthKeyEntry, ChangeEvent, Store, UrlAuthConfig, open_store
from liverelay.store.admin import db_copy
from liverelay.urlauth import UrlAuthVerifier


def _config(*keys: str, app: str = "", enabled: bool = True) -> UrlAuthConfig:
    entries = tuple(AuthKeyEntry(k, "md5") for k in keys)
    return UrlAuthConfig("v", app, "push", enabled, 600, entries, 0, 0)


async def test_put_replaces_whole_and_announces(store: Store) -> None:  # noqa: F811
    events: list[ChangeEvent] = []
    store.bus.subscribe(events.append)
    first = await store.put_url_auth(_config("a", "b"))
    assert first.keys == (AuthKeyEntry("a", "md5"), AuthKeyEntry("b", "md5")) and first.created > 0
    second = await store.put_url_auth(_config("b", enabled=False))
    assert second.keys == (AuthKeyEntry("b", "md5"),) and not second.enabled
    assert second.created == first.created
    await store.put_url_auth(_config("c", app="live"))
    listed = await store.list_url_auth("v")
    assert [(c.app, c.keys[0].secret_key) for c in listed] == [("", "b"), ("live", "c")]
    assert await store.list_url_auth("other") == []
    assert await store.delete_url_auth("v", "live", "push")
    assert not await store.delete_url_auth("v", "live", "push")
    url_events = [(e.op, e.key) for e in events if e.entity == "url_auth"]
    assert url_events == [
        ("added", ("v", "", "push")),
        ("updated", ("v", "", "push")),
        ("added", ("v", "live", "push")),
        ("deleted", ("v", "live", "push")),
    ]


async def test_verifier_follows_the_store(store_settings: Settings) -> None:  # noqa: F811
    opened = await open_store(store_settings)
    try:
        await opened.put_url_auth(_config("old"))
        verifier = await UrlAuthVerifier.from_store(opened, open_publish=True, rtmp_host="127.0.0.1")
        assert verifier.config_for("v", "live", "push") is not None
        await opened.put_url_auth(_config("new"))  # applies at once, no restart
        config = verifier.config_for("v", "live", "push")
        assert config is not None and config.keys[0].secret_key == "new"
    finally:
        await opened.close()


async def test_another_nodes_key_change_reaches_this_node(pg_url: str) -> None:
    settings = Settings(database_url=pg_url)
    a = await open_store(settings)
    b = await open_store(settings)
    try:
        verifier = await UrlAuthVerifier.from_store(b, open_publish=True, rtmp_host="127.0.0.1")
        arrived = asyncio.Event()
        b.bus.subscribe(lambda e: arrived.set() if e.entity == "url_auth" else None)
        await a.put_url_auth(_config("k1"))
        await asyncio.wait_for(arrived.wait(), 15)
        config = verifier.config_for("v", "x", "push")
        assert config is not None and config.keys[0].secret_key == "k1"
    finally:
        await a.close()
        await b.close()


async def test_db_copy_carries_url_auth(store_settings: Settings, tmp_path: Path) -> None:  # noqa: F811
    source = await open_store(Settings(data_dir=tmp_path / "src"))
    try:
        await source.put_url_auth(_config("k1", "k2", app="live"))
    finally:
        await source.close()
    dst_url = store_settings.database_url or f"sqlite:///{tmp_path / 'dst.db'}"
    await db_copy(f"sqlite:///{tmp_path / 'src' / 'liverelay.db'}", dst_url, tmp_path)
    dest = await open_store(Settings(data_dir=tmp_path, database_url=dst_url))
    try:
        [copied] = await dest.list_url_auth("v")
        assert copied.key == ("v", "live", "push") and [k.secret_key for k in copied.keys] == ["k1", "k2"]
    finally:
        await dest.close()
