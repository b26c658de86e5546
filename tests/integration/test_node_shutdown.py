"""Node shutdown: a part that fails to close is logged with its name, the others still close.

The faults are injected into a real node (real listeners on loopback, a real store):
the hub's and the store's close raise, and the test checks that each failure is in the
log with its traceback and that every listener stopped accepting anyway.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from liverelay.config import Settings, load_settings
from liverelay.node import Node


def _settings(data_dir: Path) -> Settings:
    return load_settings(
        env={},
        overrides={
            "data_dir": str(data_dir),
            "api.listen": "127.0.0.1:0",
            "media.http_listen": "127.0.0.1:0",
            "media.rtmp_listen": "127.0.0.1:0",
        },
    )


async def _accepts(port: int) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except OSError:
        return False
    writer.close()
    return True


async def test_a_failing_part_is_logged_and_the_rest_still_closes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = Node(_settings(tmp_path))
    await node.start()
    ports = {listener.name: listener.port for listener in node.listeners}
    assert set(ports) == {"api", "http", "rtmp"}
    for port in ports.values():
        assert await _accepts(port)
    assert node.hub is not None and node.store is not None
    real_store_close = node.store.close

    async def hub_close_bug() -> None:
        raise RuntimeError("hub close bug")

    async def store_close_bug() -> None:
        await real_store_close()
        raise RuntimeError("store close bug")

    node.hub.close = hub_close_bug  # type: ignore[method-assign]
    node.store.close = store_close_bug  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="liverelay.node")
    await asyncio.wait_for(node.close(), 30)

    failures = {r.getMessage(): r for r in caplog.records if r.name == "liverelay.node"}
    hub_line = "shutdown: closing the hub failed; closing the other parts"
    store_line = "shutdown: closing the store failed; closing the other parts"
    assert hub_line in failures and failures[hub_line].exc_info is not None
    assert store_line in failures and failures[store_line].exc_info is not None
    # The hub's failure did not stop the listeners after it from closing.
    for name, port in ports.items():
        assert not await _accepts(port), f"the {name} listener still accepts after close()"
