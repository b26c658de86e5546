"""LiveService: a drop-in for the official SDK's live v20230101 LiveService.

`from liverelay.sdk import LiveService` and the official examples run unchanged:
same constructor (host, ak, sk), same method names, each taking a body dict and
returning the parsed response dict (the methods come from the one table in
actions.py, typed with liverelay.schemas' shapes). Differences: errors raise typed exceptions,
throttling/5xx/transport failures are retried, and settings are per instance.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from ._base import ServiceBase, list_items, read_response
from .errors import LiveAPIError, LiveConnectionError

Body = Mapping[str, Any]


class LiveService(ServiceBase):
    """Synchronous client (httpx.Client, one connection pool per instance)."""

    def _open_client(self) -> None:
        self._client = httpx.Client(timeout=self.timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LiveService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, action: str, body: Body | None = None) -> dict[str, Any]:
        """Run one action with retries; return the response envelope as a dict."""
        attempt = 0
        while True:
            try:
                return self._call_once(action, body)
            except (LiveAPIError, LiveConnectionError) as error:
                time.sleep(self.retry.wait_before_retry(action, attempt, error))
                attempt += 1

    def _call_once(self, action: str, body: Body | None) -> dict[str, Any]:
        prepared = self.prepare(action, body)
        with self.transport_errors(action):
            response = self._client.request(
                prepared.method,
                prepared.url,
                content=prepared.content,
                headers=prepared.headers,
                timeout=self.timeout,
            )
        return read_response(action, response)

    def iter_relay_sources_v4(
        self, domain: str, page_size: int = 100, *, max_pages: int = 10_000
    ) -> Iterator[dict[str, Any]]:
        """Every ListRelaySourceV4 item of `domain`, page after page."""
        for page in range(1, max_pages + 1):
            response = self.list_relay_source_v4({"Domain": domain, "Page": page, "Size": page_size})
            items, page_total = list_items(response)
            yield from items
            if not items or len(items) < page_size or page >= page_total:
                return
