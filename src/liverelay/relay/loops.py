"""Relay-loop guard: play-triggered pulls carry a marker, so a loop is refused at once.

A V3 pull tells its origin the node ids of the relay chain so far, this node's last
(`3f9a1c02.77e0b4d1`): the RTMP puller adds `lr_via=<chain>` to the play name's query,
the FLV puller sends the header `Liverelay-Via: <chain>` (sources.base.relay_chain
carries the chain from here to the puller). Our RTMP server hands the play query to the
hub and on to `play_trigger` as it is; the HTTP server adds the header to the query as
`lr_via`. A node whose stream is missing refuses a marked request at once when

- its own id is already in the chain: the request came back through a chain this node
  started (a node that is its own origin, two nodes that are each other's origin), so
  pulling again would only wait for itself; or
- starting a pull would make the chain longer than `relay.max_hops` (any loop, also
  through nodes that restarted and got new ids, ends there).

A stream the node has is served whatever the marker says, and a marked request joins a
pull of the same stream that is already running (that adds no hop). The request's own
`lr_via` is never passed on in the origin URL: the chain is sent on by the puller.
Origins that are not liverelay ignore the extra parameter and header.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from urllib.parse import parse_qsl, quote, urlencode

from ..sources.base import RELAY_VIA_PARAM as RELAY_MARK_PARAM

log = logging.getLogger("liverelay.relay.loops")

# Node ids are what `new_node_id` makes or an operator sets (relay.node_id): short, URL-safe.
_NODE_ID = re.compile(r"[0-9A-Za-z_-]{1,32}")
# A marker longer than this is refused without being parsed further (it is ours or forged).
MAX_MARK_CHARS = 1024
# Refusals are logged at most once per this many seconds (a loop or an attacker can repeat them).
LOG_INTERVAL_S = 1.0


def new_node_id() -> str:
    """A random id for this process (a restarted node gets a new one; max_hops still bounds)."""
    return secrets.token_hex(4)


def valid_node_id(node_id: str) -> bool:
    return _NODE_ID.fullmatch(node_id) is not None


def parse_via(query: str) -> list[str] | None:
    """The relay chain named by `lr_via` in an undecoded query; None when the query has none.

    A marker that is too long or names an id that is not one gets one entry per dot-part
    all the same (so it counts against max_hops), never an exception.
    """
    values = [v for k, v in parse_qsl(query.lstrip("?"), keep_blank_values=True) if k == RELAY_MARK_PARAM]
    if not values:
        return None
    text = ".".join(v for v in values if v)
    if not text:
        return []
    if len(text) > MAX_MARK_CHARS:
        return ["?"] * (MAX_MARK_CHARS // 2)
    return text.split(".")


def strip_mark(query: str) -> str:
    """The query without any `lr_via` (a request's marker is never passed on as it came);
    returned unchanged, byte for byte, when it has none."""
    pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if all(k != RELAY_MARK_PARAM for k, _ in pairs):
        return query
    return urlencode([(k, v) for k, v in pairs if k != RELAY_MARK_PARAM], quote_via=quote)


class LoopGuard:
    """The decision for one node: refuse a marked request, and mark the node's own pulls."""

    def __init__(self, node_id: str, max_hops: int) -> None:
        if not valid_node_id(node_id):
            raise ValueError(f"relay.node_id {node_id!r}: 1-32 letters, digits, '_' or '-'")
        self.node_id = node_id
        self.max_hops = max_hops
        self.refused = 0
        self._last_log = 0.0
        self._unlogged = 0

    def refusal(self, query: str, *, starting: bool) -> str | None:
        """Why a request with `query` for a missing stream must be refused, or None.

        `starting`: answering it would start a new pull (no pull of the stream is running).
        """
        via = parse_via(query)
        if not via:
            return None
        if self.node_id in via:
            return (
                f"relay loop: this node ({self.node_id}) is already in the relay chain {'.'.join(via)[:200]}"
            )
        if starting and len(via) >= self.max_hops:
            return f"relay chain of {len(via)} hops reaches relay.max_hops={self.max_hops}"
        return None

    def chain(self, query: str) -> tuple[str, ...]:
        """The chain this node's pull sends on: the request's, then this node."""
        return (*(part for part in (parse_via(query) or []) if part), self.node_id)

    def log_refusal(self, key: object, reason: str) -> None:
        """One log line per LOG_INTERVAL_S at most; the ones in between are counted in the next."""
        self.refused += 1
        now = time.monotonic()
        if now - self._last_log < LOG_INTERVAL_S:
            self._unlogged += 1
            return
        more = f" (+{self._unlogged} more since the last line)" if self._unlogged else ""
        log.warning("relay pull of %s refused: %s%s", key, reason, more)
        self._last_log = now
        self._unlogged = 0
