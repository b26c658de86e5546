"""Relay events as JSON POSTs to settings.webhook.url, off the data plane.

`WebhookSender.send(body)` only appends to a bounded queue (dropping the oldest body
when full, counted in `dropped`); one background task posts them in order, each with
a timeout and up to `retries` retries with a short backoff. A dead webhook receiver
therefore costs the relays nothing but a bounded amount of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from typing import Any

import aiohttp

from ..backoff import backoff_delay
from ..config import WebhookSettings
from ..tasks import cancel_and_wait

log = logging.getLogger("liverelay.relay.webhooks")

QUEUE_MAX = 1000
_RETRY_BASE_S = 0.5
# Longest pause between two tries of one body (retries is small; this bounds a big one).
_RETRY_MAX_S = 10.0


class WebhookSender:
    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._queue: deque[dict[str, Any]] = deque(maxlen=QUEUE_MAX)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return bool(self.settings.url)

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-sender")

    def send(self, body: dict[str, Any]) -> None:
        """Queue one event body; never blocks, never raises."""
        if not self.enabled:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest on append
        self._queue.append(body)
        self._wakeup.set()

    async def close(self, drain_timeout_s: float = 1.0) -> None:
        """Give queued events a short chance to go out, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            deadline = asyncio.get_running_loop().time() + drain_timeout_s
            while self._queue and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
        await cancel_and_wait(self._task, "the webhook sender", logger=log)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            body = self._queue.popleft()
            await self._post(body)

    async def _post(self, body: dict[str, Any]) -> None:
        assert self._session is not None
        data = json.dumps(body, separators=(",", ":")).encode()
        attempts = 1 + max(0, self.settings.retries)
        for attempt in range(attempts):
            try:
                async with self._session.post(
                    self.settings.url, data=data, headers={"Content-Type": "application/json"}
                ) as resp:
                    await resp.read()
                    if resp.status < 300:
                        self.sent += 1
                        return
                    # 4xx other than 408/429 will not get better by retrying.
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        break
                    error = f"HTTP {resp.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < attempts:
                log.debug("webhook %s failed (%s), retrying", body.get("Event"), error)
                await asyncio.sleep(backoff_delay(attempt, base=_RETRY_BASE_S, cap=_RETRY_MAX_S, jitter=0.5))
        self.failed += 1
        log.warning("webhook %s to %s not delivered", body.get("Event"), self.settings.url)
