"""Run the API app on 127.0.0.1 in a background thread, for tests and tools.

The thread owns its own event loop, so synchronous callers (the official SDK, httpx)
can talk to it while the test itself stays synchronous. Used by our tests and by the
SDK/CLI tests of teammates.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiohttp import web

from ..config import Settings
from ..store import Store, open_store
from .app import create_api_app
from .protocols import RelayStatusSource
from .signing import sign_request

T = TypeVar("T")


@dataclass
class BackgroundApi:
    settings: Settings
    keys: list[tuple[str, str]] = field(default_factory=list)
    relays: RelayStatusSource | None = None
    port: int = 0
    _store: Store | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def store(self) -> Store:
        assert self._store is not None
        return self._store

    def start(self, timeout: float = 10.0) -> BackgroundApi:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="liverelay-api-test", daemon=True)
        self._thread.start()
        self.call(self._start(), timeout=timeout)
        return self

    async def _start(self) -> None:
        store = await open_store(self.settings)
        for ak, sk in self.keys:
            await store.ensure_key(ak, sk)
        self._store = store
        app = create_api_app(self.settings, store, self.relays)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop (e.g. a Store method) and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self.call(self._stop(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._store is not None:
            await self._store.close()

    def __enter__(self) -> BackgroundApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def signed_post(
    client: httpx.Client,
    host: str,
    action: str,
    body: bytes | str | dict[str, Any],
    *,
    access_key: str,
    secret_key: str,
    version: str = "2023-01-01",
    **sign_options: Any,
) -> httpx.Response:
    """POST an action signed like the official SDK (json.dumps defaults for dict bodies)."""
    import json

    if isinstance(body, dict):
        raw = json.dumps(body).encode()
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = body
    query = [("Action", action), ("Version", version)]
    headers = sign_request(
        method="POST",
        host=host,
        path="/",
        query=query,
        body=raw,
        access_key=access_key,
        secret_key=secret_key,
        **sign_options,
    )
    return client.post(f"http://{host}/", params=tuple(query), content=raw, headers=headers)


def api_settings(data_dir: Path, **api_overrides: Any) -> Settings:
    settings = Settings(data_dir=data_dir)
    for name, value in api_overrides.items():
        setattr(settings.api, name, value)
    return settings


SEED_VHOST = "push.example.com"
SEED_DOMAINS: dict[str, Any] = {
    "Vhost": SEED_VHOST,
    "Domains": [
        {"DomainName": "push.example.com", "Type": "push", "Region": "cn"},
        {"DomainName": "pull.example.com", "Type": "pull-flv", "Region": "cn"},
    ],
}

# The seven request bodies of the product brief's seed (relay-source-python-sdk-examples.txt),
# as written there (comments dropped, values and key order unchanged): what the official SDK
# and ours must send verbatim. They expect SEED_DOMAINS to be registered.
SEED_UPDATE_V3: dict[str, Any] = {
    "Vhost": "push.example.com",
    "App": "live",
    "GroupDetails": [
        {
            "Group": "relay1",
            "Servers": [
                {
                    "RelaySourceProtocol": "rtmp",
                    "RelaySourceDomain": "example.org",
                    "RelaySourceParams": {"key1": "value1", "key2": "value2"},
                }
            ],
        }
    ],
}
SEED_DELETE_V3: dict[str, Any] = {"Vhost": "push.example.com", "App": "live", "Group": "relay1"}
SEED_DESCRIBE_V3: dict[str, Any] = {"Vhost": "push.example.com", "App": "live", "Group": "relay1"}
SEED_CREATE_V4: dict[str, Any] = {
    "StartTime": 1683518058,
    "EndTime": 1683777258,
    "App": "live",
    "Stream": "example_stream",
    "Domain": "pull.example.com",
    "SrcAddrS": ["rtmp://live.example.com"],
}
SEED_DELETE_V4: dict[str, Any] = {"App": "live", "Stream": "stream-123", "Domain": "pull.example.com"}
SEED_UPDATE_V4: dict[str, Any] = dict(SEED_CREATE_V4)  # the seed's Update body is its Create body
SEED_LIST_V4: dict[str, Any] = {"Domain": "push.example.com", "Page": 1, "Size": 20}


class SignedClient:
    """A tiny synchronous signed client: `post(action, body) -> httpx.Response`."""

    def __init__(self, host: str, access_key: str, secret_key: str, timeout: float = 10.0) -> None:
        self.host = host
        self.access_key = access_key
        self.secret_key = secret_key
        self.http = httpx.Client(timeout=timeout)

    def post(self, action: str, body: bytes | str | dict[str, Any], **options: Any) -> httpx.Response:
        keys = {"access_key": self.access_key, "secret_key": self.secret_key}
        return signed_post(self.http, self.host, action, body, **keys, **options)

    def ok(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST and require success; returns the Result (or {} when there is none)."""
        resp = self.post(action, body)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        assert "Error" not in data["ResponseMetadata"], resp.text
        result: dict[str, Any] = data.get("Result", {})
        return result

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SignedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
