"""AsyncLiveService: LiveService's methods as coroutines (httpx.AsyncClient)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from ._base import ServiceBase, list_items, read_response
from .errors import LiveAPIError, LiveConnectionError

Body = Mapping[str, Any]


class AsyncLiveService(ServiceBase):
    """Asynchronous client; use `async with` or `await aclose()` when done."""

    def _open_client(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncLiveService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, action: str, body: Body | None = None) -> dict[str, Any]:
        """Run one action with retries; return the response envelope as a dict."""
        attempt = 0
        while True:
            try:
                return await self._call_once(action, body)
            except (LiveAPIError, LiveConnectionError) as error:
                await asyncio.sleep(self.retry.wait_before_retry(action, attempt, error))
                attempt += 1

    async def _call_once(self, action: str, body: Body | None) -> dict[str, Any]:
        prepared = self.prepare(action, body)
        with self.transport_errors(action):
            response = await self._client.request(
                prepared.method,
                prepared.url,
                content=prepared.content,
                headers=prepared.headers,
                timeout=self.timeout,
            )
        return read_response(action, response)

    async def iter_relay_sources_v4(
        self, domain: str, page_size: int = 100, *, max_pages: int = 10_000
    ) -> AsyncIterator[dict[str, Any]]:
        """Every ListRelaySourceV4 item of `domain`, page after page (async for)."""
        for page in range(1, max_pages + 1):
            response = await self.list_relay_source_v4({"Domain": domain, "Page": page, "Size": page_size})
            items, page_total = list_items(response)
            for item in items:
                yield item
            if not items or len(items) < page_size or page >= page_total:
                return
