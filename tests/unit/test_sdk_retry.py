"""Retries, timeouts and the paginator against a real tiny aiohttp server on 127.0.0.1.

The server answers from a script (status, body) and verifies every request's
signature with the shared signing module, so a retry that re-sent stale or
mismatched bytes would show up as a 401 here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from tests.conftest import TEST_AK, TEST_SK

from liverelay.api.signing import parse_authorization, verify_signature
from liverelay.sdk import (
    AsyncLiveService,
    InvalidParamError,
    LiveConnectionError,
    LiveService,
    ServerError,
    ThrottledError,
)

Reply = tuple[int, dict[str, Any], dict[str, str]]


def ok(result: dict[str, Any] | None = None) -> Reply:
    body: dict[str, Any] = {"ResponseMetadata": {"RequestId": "ok-1", "Version": "2023-01-01"}}
    if result is not None:
        body["Result"] = result
    return 200, body, {}


def err(status: int, code: str, headers: dict[str, str] | None = None) -> Reply:
    meta = {"RequestId": f"r-{status}", "Error": {"Code": code, "Message": f"{code} happened"}}
    return status, {"ResponseMetadata": meta}, headers or {}


@dataclass
class ScriptedApi:
    """Answers request n with replies[n] (the last one repeats), or with `handler`."""

    replies: list[Reply] = field(default_factory=list)
    handler: Callable[[dict[str, Any]], Reply] | None = None
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        parsed = parse_authorization(headers["authorization"])
        signed_ok = verify_signature(
            parsed,
            secret_key=TEST_SK,
            method=request.method,
            path=request.path,
            query=list(request.query.items()),
            headers=headers,
            body=raw,
        )
        body = json.loads(raw)
        self.requests.append({"action": request.query.get("Action"), "body": body, "signed_ok": signed_ok})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not signed_ok:
            status, payload, extra = err(401, "SignatureDoesNotMatch")
        elif self.handler is not None:
            status, payload, extra = self.handler(body)
        else:
            status, payload, extra = self.replies[min(len(self.requests) - 1, len(self.replies) - 1)]
        return web.json_response(payload, status=status, headers=extra)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def api() -> AsyncIterator[ScriptedApi]:
    scripted = ScriptedApi()
    app = web.Application()
    app.router.add_post("/", scripted.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    scripted.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield scripted
    await runner.cleanup()


def sync_client(api: ScriptedApi, **kwargs: Any) -> LiveService:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    return LiveService(api.host, TEST_AK, TEST_SK, "http", **kwargs)


def async_client(api: ScriptedApi, **kwargs: Any) -> AsyncLiveService:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    return AsyncLiveService(api.host, TEST_AK, TEST_SK, "http", **kwargs)


async def test_sync_retries_throttling_then_succeeds(api: ScriptedApi) -> None:
    api.replies = [
        err(429, "AccountFlowLimitExceeded"),
        err(429, "AccountFlowLimitExceeded"),
        ok({"TaskId": "7"}),
    ]
    with sync_client(api) as svc:
        # The sync client blocks, so it runs in a thread while this loop serves it.
        resp = await asyncio.to_thread(svc.create_relay_source_v4, {"Domain": "d", "App": "a", "Stream": "s"})
    assert resp["Result"] == {"TaskId": "7"}
    assert [r["action"] for r in api.requests] == ["CreateRelaySourceV4"] * 3
    assert all(r["signed_ok"] for r in api.requests)
    assert all(r["body"] == {"Domain": "d", "App": "a", "Stream": "s"} for r in api.requests)


async def test_sync_gives_up_after_max_retries(api: ScriptedApi) -> None:
    api.replies = [err(429, "AccountFlowLimitExceeded")]
    with sync_client(api, max_retries=2) as svc, pytest.raises(ThrottledError) as caught:
        await asyncio.to_thread(svc.list_relay_source_v4, {"Domain": "d"})
    assert len(api.requests) == 3
    assert caught.value.request_id == "r-429"
    assert caught.value.http_status == 429


async def test_server_error_retried_for_idempotent_action(api: ScriptedApi) -> None:
    api.replies = [err(500, "InternalError"), err(502, "FailToConnect"), ok()]
    with sync_client(api) as svc:
        resp = await asyncio.to_thread(svc.delete_relay_source_v4, {"Domain": "d", "App": "a", "Stream": "s"})
    assert "Error" not in resp["ResponseMetadata"]
    assert len(api.requests) == 3


async def test_server_error_not_retried_for_create(api: ScriptedApi) -> None:
    api.replies = [err(500, "InternalError"), ok()]
    async with async_client(api) as svc:
        with pytest.raises(ServerError):
            await svc.create_relay_source_v4({"Domain": "d"})
    assert len(api.requests) == 1


async def test_unavailable_is_retried_even_for_create(api: ScriptedApi) -> None:
    api.replies = [err(503, "ServiceUnavailableTemp"), ok({"TaskId": "1"})]
    async with async_client(api) as svc:
        assert (await svc.create_relay_source_v4({"Domain": "d"}))["Result"]["TaskId"] == "1"
    assert len(api.requests) == 2


async def test_client_errors_are_not_retried(api: ScriptedApi) -> None:
    api.replies = [err(400, "InvalidParam.BindError"), ok()]
    async with async_client(api) as svc:
        with pytest.raises(InvalidParamError) as caught:
            await svc.update_relay_source_v3({"Vhost": 1})
    assert caught.value.code == "InvalidParam.BindError"
    assert len(api.requests) == 1


async def test_async_retries_and_honours_retry_after(api: ScriptedApi) -> None:
    api.replies = [err(429, "AccountFlowLimitExceeded", {"Retry-After": "0.3"}), ok({"X": 1})]
    async with async_client(api, backoff_max=1.0) as svc:
        started = time.monotonic()
        resp = await svc.describe_relay_source_v3({"Vhost": "v"})
        waited = time.monotonic() - started
    assert resp["Result"] == {"X": 1}
    assert len(api.requests) == 2
    assert waited >= 0.3  # a lower bound: the client slept at least what the server asked


async def test_read_timeout_retried_only_when_idempotent(api: ScriptedApi) -> None:
    api.delay_s = 1.0
    api.replies = [ok()]
    async with async_client(api, timeout=0.2, max_retries=2) as svc:
        with pytest.raises(LiveConnectionError) as caught:
            await svc.create_relay_source_v4({"Domain": "d"})
        assert caught.value.sent
        assert len(api.requests) == 1  # the request may have run: never repeated
        with pytest.raises(LiveConnectionError):
            await svc.list_domain_detail({"PageNum": 1, "PageSize": 10})
    assert len(api.requests) == 4  # 1 create + 3 list attempts


async def test_refused_connection_is_a_connection_error() -> None:
    from tests.conftest import free_port

    port = free_port()  # nothing listens here
    svc = LiveService(f"127.0.0.1:{port}", TEST_AK, TEST_SK, "http", max_retries=1, backoff_base=0.01)
    with svc, pytest.raises(LiveConnectionError) as caught:
        await asyncio.to_thread(svc.describe_domain, {"DomainList": ["x"]})
    assert not caught.value.sent
    assert caught.value.action == "DescribeDomain"


def paged(total: int) -> Callable[[dict[str, Any]], Reply]:
    items = [
        {"Domain": "d", "App": "live", "Stream": f"s{i:03d}", "SrcAddrS": ["rtmp://o/live"]}
        for i in range(total)
    ]

    def handler(body: dict[str, Any]) -> Reply:
        page, size = int(body["Page"]), int(body["Size"])
        chunk = items[(page - 1) * size : page * size]
        pages = -(-total // size)
        return ok(
            {
                "List": chunk,
                "Pagination": {"PageCur": page, "PageSize": size, "PageTotal": pages, "TotalCount": total},
            }
        )

    return handler


async def test_paginators_walk_every_page(api: ScriptedApi) -> None:
    api.handler = paged(7)
    with sync_client(api) as svc:
        items = await asyncio.to_thread(lambda: list(svc.iter_relay_sources_v4("d", page_size=3)))
    assert [i["Stream"] for i in items] == [f"s{i:03d}" for i in range(7)]
    assert [r["body"]["Page"] for r in api.requests] == [1, 2, 3]
    api.requests.clear()
    async with async_client(api) as asvc:
        streams = [item["Stream"] async for item in asvc.iter_relay_sources_v4("d", page_size=7)]
    assert len(streams) == 7
    assert [r["body"]["Page"] for r in api.requests] == [1]  # a full last page with PageTotal 1 stops
