"""Store: CRUD per entity, ChangeBus after commit, DomainTable, keys, migrations.

The `store` / `store_settings` tests run against SQLite and a real PostgreSQL
(tests/pgserver.py); the SQLite file's own properties are tested on SQLite only."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from liverelay.config import Settings
from liverelay.store import (
    AlreadyExists,
    ChangeEvent,
    DomainTable,
    NotFound,
    RelayGroup,
    RelayServer,
    RelayV3Config,
    Store,
    StoreError,
    migrate,
    normalise_host,
    open_store,
)
from liverelay.store.sqlite import SqliteRepository
from liverelay.store.store import KEY_CACHE_S


@pytest.fixture(params=["sqlite", "postgresql"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of an empty store of each kind."""
    if request.param == "postgresql":
        return Settings(data_dir=tmp_path, database_url=request.getfixturevalue("pg_url"))
    return Settings(data_dir=tmp_path)


@pytest.fixture
async def store(store_settings: Settings) -> AsyncIterator[Store]:
    s = await open_store(store_settings)
    try:
        yield s
    finally:
        await s.close()


def _group(name: str, *addresses: str) -> RelayGroup:
    return RelayGroup(name, tuple(RelayServer("rtmp", a, {"k": "v"}) for a in addresses))


async def test_pragmas_wal_and_full_sync(tmp_path: Path) -> None:
    store = await open_store(Settings(data_dir=tmp_path))

    def check() -> tuple[str, int]:
        conn = store.repo._db()  # type: ignore[attr-defined]
        return conn.execute("PRAGMA journal_mode").fetchone()[0], conn.execute(
            "PRAGMA synchronous"
        ).fetchone()[0]

    mode, sync = await store.repo._call(check)  # type: ignore[attr-defined]
    await store.close()
    assert mode == "wal"
    assert sync == 2  # FULL


async def test_domains_and_domain_table(store: Store) -> None:
    await store.add_domains(
        "push.example.com", [("Push.Example.com", "push", "cn"), ("pull.example.com", "pull-flv", "cn")]
    )
    table = store.domain_table
    assert table.vhost_for("push.example.com") == "push.example.com"
    assert table.vhost_for("PULL.example.COM:8080") == "push.example.com"
    assert table.vhost_for("pull.example.com.") == "push.example.com"
    assert table.vhost_for("other.example.com") is None
    assert [d.domain for d in table.domains_of("push.example.com")] == [
        "pull.example.com",
        "push.example.com",
    ]
    with pytest.raises(AlreadyExists):
        await store.add_domains("v2", [("new.example.com", "push", "cn"), ("pull.example.com", "push", "cn")])
    # All or nothing: the new domain of the failed batch was not added.
    assert table.vhost_for("new.example.com") is None
    assert len(await store.list_domains()) == 2
    assert await store.delete_domain("PULL.example.com")
    assert not await store.delete_domain("pull.example.com")
    assert table.vhost_for("pull.example.com") is None


async def test_domain_list_matches_the_database(store: Store) -> None:
    """list_domains (from memory on SQLite) is what the database holds, in its order, after
    adds, a refused batch, moves, status changes and deletes."""
    await store.add_domains("vh", [("b.example.com", "push", "cn"), ("a.example.com", "pull-flv", "cn")])
    with pytest.raises(AlreadyExists):
        await store.add_domains("vh", [("c.example.com", "push", "cn"), ("a.example.com", "push", "cn")])
    await store.add_domains("v2", [("c.example.com", "pull-hls", "cn")])
    await store.update_domain("b.example.com", vhost="v2", status=2)
    await store.delete_domain("a.example.com")
    listed = await store.list_domains()
    assert listed == await store.repo.list_domains()
    assert [(d.domain, d.vhost, d.status) for d in listed] == [
        ("b.example.com", "v2", 2),
        ("c.example.com", "v2", 0),
    ]


async def test_domain_table_loaded_at_open(store_settings: Settings) -> None:
    s = await open_store(store_settings)
    await s.add_domains("vh", [("a.example.com", "push", "cn")])
    await s.close()
    s = await open_store(store_settings)
    try:
        assert s.domain_table.vhost_for("a.example.com") == "vh"
    finally:
        await s.close()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("A.b.C", "a.b.c"),
        ("a.b:1935", "a.b"),
        ("[::1]:80", "::1"),
        ("::1", "::1"),
        ("a.b.", "a.b"),
        (" x ", "x"),
    ],
)
def test_normalise_host(host: str, expected: str) -> None:
    assert normalise_host(host) == expected


async def test_relay_v3_replace_and_group_delete(store: Store) -> None:
    first = await store.put_relay_v3("vh", "live", [_group("g1", "a:1935"), _group("g2", "b")])
    assert [g.name for g in first.groups] == ["g1", "g2"]
    second = await store.put_relay_v3("vh", "live", [_group("g3", "c")])
    assert [g.name for g in second.groups] == ["g3"]  # replaced, not merged
    assert second.created == first.created
    await store.put_relay_v3("vh", "", [_group("all", "d")])
    assert [c.app for c in await store.list_relay_v3("vh")] == ["", "live"]
    # Removing an unknown group changes nothing; removing the last group removes the config.
    assert not await store.delete_relay_v3("vh", "live", "nope")
    await store.put_relay_v3("vh", "live", [_group("g1", "a"), _group("g2", "b")])
    assert await store.delete_relay_v3("vh", "live", "g1")
    current = await store.get_relay_v3("vh", "live")
    assert current is not None and [g.name for g in current.groups] == ["g2"]
    assert current.groups[0].servers[0].params == {"k": "v"}
    assert await store.delete_relay_v3("vh", "live", "g2")
    assert await store.get_relay_v3("vh", "live") is None
    assert not await store.delete_relay_v3("vh", "live")


async def test_relay_v4_lifecycle_and_paging(store: Store) -> None:
    created = await store.create_relay_v4(
        "vh",
        "live",
        "s0",
        domain="pull.example.com",
        src_addrs=["rtmp://o/live/s0"],
        start_time=100,
        end_time=200,
    )
    assert created.task_id.isdigit() and len(created.task_id) >= 16
    with pytest.raises(AlreadyExists):
        await store.create_relay_v4(
            "vh", "live", "s0", domain="x", src_addrs=["rtmp://o"], start_time=None, end_time=None
        )
    for i in range(1, 5):
        await store.create_relay_v4(
            "vh",
            "live",
            f"s{i}",
            domain="push.example.com",
            src_addrs=[f"rtmp://o/{i}"],
            start_time=None,
            end_time=None,
        )
    await store.create_relay_v4(
        "other", "live", "s0", domain="o", src_addrs=["srt://o:9000"], start_time=None, end_time=None
    )
    page, total = await store.list_relay_v4("vh", offset=2, limit=2)
    assert total == 5 and [c.stream for c in page] == ["s2", "s3"]
    assert (await store.list_relay_v4())[1] == 6

    updated = await store.update_relay_v4(
        "vh", "live", "s0", src_addrs=["rtmp://n/a", "rtmp://n/b"], start_time=None, end_time=None
    )
    assert updated.task_id == created.task_id and updated.domain == "pull.example.com"
    assert updated.src_addrs == ("rtmp://n/a", "rtmp://n/b") and updated.start_time is None
    with pytest.raises(NotFound):
        await store.update_relay_v4(
            "vh", "live", "missing", src_addrs=["rtmp://x"], start_time=None, end_time=None
        )
    assert await store.delete_relay_v4("vh", "live", "s0")
    assert not await store.delete_relay_v4("vh", "live", "s0")
    assert await store.get_relay_v4("vh", "live", "s0") is None


async def test_bus_events_are_published_after_commit(tmp_path: Path) -> None:
    """Each subscriber sees the row in the database file (read by another connection)."""
    store = await open_store(Settings(data_dir=tmp_path))
    db = sqlite3.connect(str(Settings(data_dir=tmp_path).sqlite_path))
    seen: list[tuple[str, str, object, bool]] = []

    def committed(event: ChangeEvent) -> bool:
        table = {"domain": "domains", "relay_v3": "relay_v3", "relay_v4": "relay_v4", "key": "access_keys"}
        count = db.execute(f"SELECT COUNT(*) FROM {table[event.entity]}").fetchone()[0]
        return count > 0 if event.op != "deleted" else True

    def on_event(event: ChangeEvent) -> None:
        seen.append((event.entity, event.op, event.key, committed(event)))

    def broken(event: ChangeEvent) -> None:
        raise RuntimeError("a subscriber bug")

    store.bus.subscribe(broken)  # must not break writes or other subscribers
    unsubscribe = store.bus.subscribe(on_event)
    await store.add_domains("vh", [("a.example.com", "push", "cn")])
    await store.put_relay_v3("vh", "live", [_group("g", "x")])
    await store.put_relay_v3("vh", "live", [_group("g", "y")])
    await store.create_relay_v4(
        "vh", "live", "s", domain="a.example.com", src_addrs=["rtmp://x"], start_time=None, end_time=None
    )
    await store.update_relay_v4("vh", "live", "s", src_addrs=["rtmp://y"], start_time=None, end_time=None)
    await store.delete_relay_v4("vh", "live", "s")
    await store.delete_relay_v4("vh", "live", "s")  # nothing deleted -> no event
    await store.delete_relay_v3("vh", "live")
    key = await store.create_key()
    await store.delete_key(key.ak)
    await store.delete_domain("a.example.com")
    unsubscribe()
    await store.add_domains("vh", [("b.example.com", "push", "cn")])
    db.close()
    await store.close()
    assert seen == [
        ("domain", "added", "a.example.com", True),
        ("relay_v3", "added", ("vh", "live"), True),
        ("relay_v3", "updated", ("vh", "live"), True),
        ("relay_v4", "added", ("vh", "live", "s"), True),
        ("relay_v4", "updated", ("vh", "live", "s"), True),
        ("relay_v4", "deleted", ("vh", "live", "s"), True),
        ("relay_v3", "deleted", ("vh", "live"), True),
        ("key", "added", key.ak, True),
        ("key", "deleted", key.ak, True),
        ("domain", "deleted", "a.example.com", True),
    ]
    # The broken subscriber did not stop the domain table (subscribed first) from updating.
    assert store.domain_table.vhost_for("b.example.com") == "vh"


async def test_keys(store: Store) -> None:
    key = await store.create_key()
    assert key.ak.startswith("AKLT") and len(key.ak) == 44 and key.ak[4:].isalnum()
    assert len(key.sk) >= 40 and key.enabled
    other = await store.create_key()
    assert other.ak != key.ak and other.sk != key.sk
    assert {k.ak for k in await store.list_keys()} == {key.ak, other.ak}
    events: list[str] = []
    store.bus.subscribe(lambda e: events.append(e.op))
    ensured = await store.ensure_key("AKLTfixed", "secret-one")
    again = await store.ensure_key("AKLTfixed", "secret-one")
    changed = await store.ensure_key("AKLTfixed", "secret-two")
    assert ensured == again and changed.sk == "secret-two"
    assert events == ["added", "updated"]
    assert (await store.get_key("AKLTfixed")).sk == "secret-two"  # type: ignore[union-attr]
    assert await store.delete_key(key.ak) and not await store.delete_key(key.ak)
    assert await store.get_key(key.ak) is None


async def test_schema_version_and_newer_schema_refused(store_settings: Settings) -> None:
    s = await open_store(store_settings)
    await s.close()
    assert await _alembic_version(store_settings) == migrate.head()
    await _alembic_version(store_settings, set_to="9999")  # as a newer liverelay would leave it
    with pytest.raises(StoreError, match="newer"):
        await open_store(store_settings)


async def _alembic_version(settings: Settings, set_to: str | None = None) -> str:
    """The revision recorded in the database (optionally overwritten first), read directly."""
    if not settings.database_url:
        db = sqlite3.connect(str(settings.sqlite_path))
        if set_to is not None:
            db.execute("UPDATE alembic_version SET version_num = ?", (set_to,))
            db.commit()
        [(version,)] = db.execute("SELECT version_num FROM alembic_version").fetchall()
        db.close()
        return str(version)
    import asyncpg

    from liverelay.store.postgres import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        if set_to is not None:
            await conn.execute("UPDATE alembic_version SET version_num = $1", set_to)
        return str(await conn.fetchval("SELECT version_num FROM alembic_version"))
    finally:
        await conn.close()


# The schema liverelay 0.1 created by hand (schema_version 1), before Alembic.
LEGACY_V1 = [
    "CREATE TABLE access_keys (ak TEXT PRIMARY KEY, sk TEXT NOT NULL, created INTEGER NOT NULL,"
    " enabled INTEGER NOT NULL DEFAULT 1)",
    "CREATE TABLE domains (domain TEXT PRIMARY KEY, type TEXT NOT NULL, vhost TEXT NOT NULL,"
    " region TEXT NOT NULL, status INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL)",
    "CREATE INDEX domains_vhost ON domains (vhost)",
    "CREATE TABLE relay_v3 (vhost TEXT NOT NULL, app TEXT NOT NULL, groups_json TEXT NOT NULL,"
    " created INTEGER NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (vhost, app))",
    "CREATE TABLE relay_v4 (id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL UNIQUE,"
    " vhost TEXT NOT NULL, app TEXT NOT NULL, stream TEXT NOT NULL, domain TEXT NOT NULL,"
    " src_addrs_json TEXT NOT NULL, start_time INTEGER, end_time INTEGER, created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL, UNIQUE (vhost, app, stream))",
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
]


async def test_pre_alembic_sqlite_store_is_adopted(tmp_path: Path) -> None:
    """A data dir from before Alembic keeps its data and is migrated on open; a newer
    schema_version is refused."""
    db = sqlite3.connect(str(Settings(data_dir=tmp_path).sqlite_path))
    for sql in LEGACY_V1:
        db.execute(sql)
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute("INSERT INTO domains VALUES ('old.example.com', 'push', 'vh', 'cn', 0, 1)")
    db.commit()
    db.close()
    s = await open_store(Settings(data_dir=tmp_path))
    try:
        assert s.domain_table.vhost_for("old.example.com") == "vh"
        await s.create_relay_v4(
            "vh", "a", "s", domain="d", src_addrs=["rtmp://o"], start_time=None, end_time=None
        )
    finally:
        await s.close()
    assert await _alembic_version(Settings(data_dir=tmp_path)) == migrate.head()
    newer = tmp_path / "newer"
    newer.mkdir()
    db = sqlite3.connect(str(Settings(data_dir=newer).sqlite_path))
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (2)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        await open_store(Settings(data_dir=newer))


async def test_concurrent_writes_share_a_commit_and_fail_alone(tmp_path: Path) -> None:
    """Group commit: writes queued together are committed together (fewer commits than
    writes), a failing one (AlreadyExists) fails alone, and every acknowledged one is on
    disk when the store is opened again."""
    s = await open_store(Settings(data_dir=tmp_path))
    await s.add_domains("vh", [("taken.example.com", "push", "cn")])
    repo = s.repo
    assert isinstance(repo, SqliteRepository)
    before = repo.write_commits
    writes = [s.put_relay_v3("vh", f"app{i}", [_group("g", f"o{i}:1935")]) for i in range(40)]
    writes.insert(20, s.add_domains("vh", [("taken.example.com", "push", "cn")]))
    results = await asyncio.gather(*writes, return_exceptions=True)
    commits = repo.write_commits - before
    await s.close()
    assert isinstance(results.pop(20), AlreadyExists)
    assert [r.app for r in results if isinstance(r, RelayV3Config)] == [f"app{i}" for i in range(40)]
    assert commits < 40  # 40 writes succeeded: at least two shared a commit
    again = await open_store(Settings(data_dir=tmp_path))
    try:
        assert sorted(c.app for c in await again.list_relay_v3("vh")) == sorted(f"app{i}" for i in range(40))
        assert [d.domain for d in await again.list_domains()] == ["taken.example.com"]
    finally:
        await again.close()


async def test_cached_key_follows_changes(tmp_path: Path) -> None:
    """get_key answers from memory, yet a key this store deletes is gone at once and one
    another process deletes (the CLI on the same file) within KEY_CACHE_S."""
    s = await open_store(Settings(data_dir=tmp_path))
    try:
        mine = await s.create_key()
        theirs = await s.create_key()
        assert await s.get_key(mine.ak) == mine and await s.get_key(theirs.ak) == theirs
        await s.delete_key(mine.ak)
        assert await s.get_key(mine.ak) is None
        other = await open_store(Settings(data_dir=tmp_path))
        await other.delete_key(theirs.ak)
        await other.close()
        deadline = time.monotonic() + KEY_CACHE_S + 10
        while await s.get_key(theirs.ak) is not None:
            assert time.monotonic() < deadline, "a key deleted elsewhere is still accepted"
            await asyncio.sleep(0.05)
    finally:
        await s.close()


async def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    s = await open_store(Settings(data_dir=tmp_path))
    await s.close()
    with pytest.raises(RuntimeError):  # the writer thread is gone
        await s.add_domains("vh", [("a.example.com", "push", "cn")])


def test_domain_table_ignores_other_entities() -> None:
    table = DomainTable()
    table.on_change(ChangeEvent("relay_v3", "deleted", ("vh", "live"), None))
    assert len(table) == 0


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    app=_text,
    params=st.dictionaries(_text, _text, max_size=4),
    addrs=st.lists(_text, min_size=1, max_size=10),
)
def test_round_trip_of_arbitrary_text(
    store_settings: Settings, app: str, params: dict[str, str], addrs: list[str]
) -> None:
    """Whatever text the API lets through is stored and read back unchanged."""
    import asyncio

    # PostgreSQL text cannot hold NUL; the API's app and domain rules never let one
    # through (params and addresses are stored as JSON, where NUL is escaped).
    assume(not store_settings.database_url or "\x00" not in app)

    async def run() -> None:
        s = await open_store(store_settings)
        try:
            groups = [RelayGroup("g", (RelayServer("flv", "h", params),))]
            await s.put_relay_v3("vh", app, groups)
            got = await s.get_relay_v3("vh", app)
            assert got is not None and got.groups[0].servers[0].params == params
            await s.delete_relay_v4("vh", app, "st")
            await s.create_relay_v4(
                "vh", app, "st", domain=app, src_addrs=addrs, start_time=None, end_time=None
            )
            v4 = await s.get_relay_v4("vh", app, "st")
            assert v4 is not None and list(v4.src_addrs) == addrs and v4.domain == app
        finally:
            await s.close()

    asyncio.run(run())


async def test_update_domain(store: Store) -> None:
    await store.add_domains("vh", [("a.example.com", "push", "cn")])
    events: list[ChangeEvent] = []
    store.bus.subscribe(events.append)
    moved = await store.update_domain("A.example.com", vhost="vh2")
    assert moved.vhost == "vh2" and store.domain_table.vhost_for("a.example.com") == "vh2"
    await store.update_domain("a.example.com", status=2)
    assert store.domain_table.vhost_for("a.example.com") is None
    assert store.domain_table.get("a.example.com") is not None
    await store.update_domain("a.example.com", status=2)  # no change -> no event
    assert [(e.op, e.value.vhost, e.value.status) for e in events] == [
        ("updated", "vh2", 0),
        ("updated", "vh2", 2),
    ]
    with pytest.raises(NotFound):
        await store.update_domain("missing.example.com", status=0)
    [record] = await store.list_domains()
    assert (record.vhost, record.status) == ("vh2", 2)


async def test_close_is_idempotent(store_settings: Settings) -> None:
    s = await open_store(store_settings)
    await s.close()
    await s.close()


async def test_migrations_build_the_schema_of_schema_py(store: Store) -> None:
    """The Alembic history and the one table definition agree, on both databases."""
    assert await store.repo._read(migrate.drift) == []  # type: ignore[attr-defined]
