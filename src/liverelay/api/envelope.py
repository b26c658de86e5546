"""The response envelope of spec A.4 and request ids."""

from __future__ import annotations

import itertools
import os
import random
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError

_counter = itertools.count()
_NODE_TAG = secrets.token_hex(2).upper()
# The random tail only spreads ids across processes (the counter makes them unique): a
# PRNG seeded from the OS, not a getrandom() syscall per request (7% of a read's cost).
_tail = random.Random(secrets.randbits(64))


_stamp: tuple[int, str] = (-1, "")  # (unix second, its 'YYYYMMDDhhmmss'): one strftime a second


def new_request_id() -> str:
    """'YYYYMMDDhhmmss' + 20 upper-case hex digits: 4 per-process random, pid, counter and random.

    Unique within a process by the counter and across processes by pid and randomness."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y%m%d%H%M%S"))
    stamp = _stamp[1]
    counter = next(_counter) & 0xFFFFFF
    return f"{stamp}{_NODE_TAG}{os.getpid() & 0xFFFF:04X}{counter:06X}{_tail.getrandbits(24):06X}"


def metadata(request_id: str, action: str, version: str, region: str, service: str) -> dict[str, Any]:
    return {
        "RequestId": request_id,
        "Action": action,
        "Version": version,
        "Service": service,
        "Region": region,
    }


def success_body(meta: dict[str, Any], result: Mapping[str, object] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"ResponseMetadata": meta}
    if result is not None:
        body["Result"] = result
    return body


def error_body(meta: dict[str, Any], error: ApiError) -> dict[str, Any]:
    return {"ResponseMetadata": {**meta, "Error": error.error_object()}}
