"""The one UTC time formatter: unix seconds -> RFC 3339 'YYYY-MM-DDTHH:MM:SSZ'."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(ts: float) -> str:
    """Unix seconds -> '2024-05-08T12:00:00Z' (whole seconds, UTC); OverflowError/OSError past year 9999."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
