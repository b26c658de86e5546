"""Debian's headless Chromium for the browser tests (hls.js player, web console): one set
of launch options, so every test runs the browser the same way."""

from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"  # the system browser, never one downloaded by `playwright install`
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_launch_options(*extra_flags: str) -> dict[str, Any]:
    """Keyword arguments for Playwright's `chromium.launch()` (sync or async API)."""
    return {"executable_path": CHROMIUM, "headless": True, "args": [*CHROMIUM_FLAGS, *extra_flags]}
