"""A real API listener (store in a tmp dir + the API app) on 127.0.0.1:0, in a thread.

The SDK's sync client and the CLI block the calling thread, so the server gets an
event loop of its own. Only the API and the store run: that is all the SDK and the
CLI's API commands need, and it keeps these tests independent of the media side.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from tests.conftest import TEST_AK, TEST_SK

from liverelay.config import Settings, load_settings
from liverelay.store import Store

T = TypeVar("T")

# The `liverelay` command line that registers liverelay.api.testing.SEED_DOMAINS.
SEED_DOMAINS_ADD = "domain add --vhost push.example.com --push push.example.com --pull pull.example.com"


@dataclass
class LocalApi:
    store: Store
    port: int
    settings: Settings
    loop: asyncio.AbstractEventLoop

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the server's loop (e.g. to read the store directly)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextmanager
def run_local_api(
    data_dir: Path, *, rate_limit_per_s: float = 1000.0, rate_burst: int = 1000
) -> Iterator[LocalApi]:
    from liverelay.api.app import create_api_app
    from liverelay.store import open_store

    settings = load_settings(
        env={},
        overrides={
            "data_dir": str(data_dir),
            "api.listen": "127.0.0.1:0",
            "api.rate_limit_per_s": rate_limit_per_s,
            "api.rate_burst": rate_burst,
        },
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="local-api", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    store: Store | None = None
    runner: web.AppRunner | None = None

    async def start() -> int:
        nonlocal runner, store
        store = await open_store(settings)
        await store.ensure_key(TEST_AK, TEST_SK)
        runner = web.AppRunner(create_api_app(settings, store), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop() -> None:
        if runner is not None:
            await runner.cleanup()
        if store is not None:
            await store.close()

    try:
        port = run(start())
        assert store is not None
        yield LocalApi(store, port, settings, loop)
    finally:
        try:
            run(stop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
