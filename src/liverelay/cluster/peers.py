"""Peer pulls: which cluster nodes a play-triggered pull may take a stream from.

A play on this node for a stream it does not hold asks `PeerSources.urls(key, query)`
first (relay/ondemand.py puts the answer before the configured origin groups): the RTMP
URLs of the other nodes that are alive, not draining, and hold the stream from a primary
source (a local publisher, a fixed relay, or a pull from an external origin - never a
node that itself pulls from a peer, so two nodes cannot feed each other a stream nobody
publishes). The answer is read from the directory's last heartbeat round, so it is cheap
and the pull re-reads it before every attempt: a holder that dies drops out within the
directory's liveness bound, a fixed relay's new owner comes in with its first heartbeat.

Vhost: a peer resolves the vhost of a request from its connect (as for any client), so a
stream of a vhost with domains is asked for with one of that vhost's domains, in SRS's
form `rtmp://peer:port/app?vhost=DOMAIN/stream` (the cluster shares its domains); a vhost
without domains is the default vhost, reached with the plain URL.

Order: rendezvous hashing of (this node, the holder, the stream) - stable, so a running
pull's list does not reshuffle between reads (fail-back would chase every reorder), and
spread, so the nodes pulling one stream do not all pick the same holder first.
"""

from __future__ import annotations

import hashlib
from typing import Protocol
from urllib.parse import quote

from ..hub import StreamKey
from ..store.domains import STATUS_NORMAL
from ..store.models import DomainRecord
from .types import NodeDirectory, NodeRecord


class VhostDomains(Protocol):
    """The cluster's domains by vhost (store.DomainTable)."""

    def domains_of(self, vhost: str) -> list[DomainRecord]: ...


class PeerSources:
    """The candidate peers of a play-triggered pull (ondemand.PeerCandidates)."""

    def __init__(self, directory: NodeDirectory, domains: VhostDomains | None, *, wait_s: float) -> None:
        self.directory = directory
        self.domains = domains
        self._index: dict[tuple[str, str, str], set[str]] = {}
        self._stamp: tuple[tuple[str, int], ...] = ()
        # How long a pull that started from peers holds its viewers without media.
        self._wait_s = wait_s

    @property
    def wait_s(self) -> float:
        return self._wait_s

    def holders(self, key: StreamKey) -> list[NodeRecord]:
        """The live, non-draining other nodes holding `key` from a primary source, best first."""
        records = self.directory.nodes()
        index = self._index_of(records)
        holding = index.get((key.vhost, key.app, key.name))
        if not holding:
            return []
        own = self.directory.node_id
        found = [
            r
            for r in records
            if r.node_id in holding and r.node_id != own and r.alive and not r.draining and r.rtmp_url
        ]
        found.sort(key=lambda r: _rank(own, r.node_id, key))
        return found

    def _index_of(self, records: list[NodeRecord]) -> dict[tuple[str, str, str], set[str]]:
        """Stream -> ids of the nodes holding it from a primary source; rebuilt only when a
        heartbeat round brought new rows (every running pull reads this once a second)."""
        stamp = tuple((r.node_id, r.heartbeat_at) for r in records)
        if stamp != self._stamp:
            index: dict[tuple[str, str, str], set[str]] = {}
            for record in records:
                for held in record.streams:
                    if held.primary:
                        index.setdefault((held.vhost, held.app, held.stream), set()).add(record.node_id)
            self._index, self._stamp = index, stamp
        return self._index

    def urls(self, key: StreamKey, query: str) -> list[str]:
        holders = self.holders(key)
        if not holders:
            return []
        domain = self.domain_of(key.vhost)
        return [peer_url(record.rtmp_url, key, query, domain) for record in holders]

    def domain_of(self, vhost: str) -> str | None:
        """A domain the peers resolve to `vhost` (None: the default vhost, no domain)."""
        if self.domains is None:
            return None
        for record in self.domains.domains_of(vhost):
            if record.status == STATUS_NORMAL:
                return record.domain
        return None


def _rank(own: str, peer: str, key: StreamKey) -> bytes:
    return hashlib.blake2b(f"{own}|{peer}|{key.vhost}|{key.app}|{key.name}".encode(), digest_size=8).digest()


def peer_url(rtmp_url: str, key: StreamKey, query: str, domain: str | None = None) -> str:
    """rtmp://peer:port/app[?vhost=DOMAIN]/stream[?query] (the viewer's query goes on: a play
    token valid here is valid on every node of the cluster, which shares the keys)."""
    base = rtmp_url.rstrip("/")
    app = quote(key.app, safe="/")
    if domain:
        app += f"?vhost={quote(domain, safe='')}"
    url = f"{base}/{app}/{quote(key.name, safe='')}"
    return f"{url}?{query.lstrip('?')}" if query.lstrip("?") else url
