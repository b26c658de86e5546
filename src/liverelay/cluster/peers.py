"""Peer pulls: which cluster nodes a play-triggered pull may take a stream from.

A play on this node for a stream it does not hold asks `PeerSources.urls(key, query)`
first (relay/ondemand.py puts the answer before the configured origin groups): the RTMP
URLs of the other nodes that are alive, not draining, and hold the stream from a primary
source (a local publisher, a fixed relay, or a pull from an external origin - never a
node that itself pulls from a peer, so two nodes cannot feed each other a stream nobody
publishes). The answer is read from the directory's last heartbeat round, so it is cheap
and the pull re-reads it before every attempt: a holder that dies drops out within the
directory's liveness bound, a fixed relay's new owner comes in with its first heartbeat.

Order: rendezvous hashing of (this node, the holder, the stream) - stable, so a running
pull's list does not reshuffle between reads (fail-back would chase every reorder), and
spread, so the nodes pulling one stream do not all pick the same holder first.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

from ..hub import StreamKey
from .types import HeldStream, NodeDirectory, NodeRecord


class PeerSources:
    """The candidate peers of a play-triggered pull (ondemand.PeerCandidates)."""

    def __init__(self, directory: NodeDirectory, *, wait_s: float) -> None:
        self.directory = directory
        # How long a pull that started from peers holds its viewers without media.
        self._wait_s = wait_s

    @property
    def wait_s(self) -> float:
        return self._wait_s

    def holders(self, key: StreamKey) -> list[tuple[NodeRecord, HeldStream]]:
        """The live, non-draining other nodes holding `key` from a primary source, best first."""
        own = self.directory.node_id
        found: list[tuple[NodeRecord, HeldStream]] = []
        for record in self.directory.nodes():
            if record.node_id == own or not record.alive or record.draining or not record.rtmp_url:
                continue
            for held in record.streams:
                if held.primary and (held.vhost, held.app, held.stream) == key:
                    found.append((record, held))
                    break
        found.sort(key=lambda pair: _rank(own, pair[0].node_id, key))
        return found

    def urls(self, key: StreamKey, query: str) -> list[str]:
        return [peer_url(record.rtmp_url, key, query) for record, _held in self.holders(key)]


def _rank(own: str, peer: str, key: StreamKey) -> bytes:
    return hashlib.blake2b(f"{own}|{peer}|{key.vhost}|{key.app}|{key.name}".encode(), digest_size=8).digest()


def peer_url(rtmp_url: str, key: StreamKey, query: str) -> str:
    """rtmp://peer:port/app/stream[?query] (the viewer's query goes on: a play token valid
    here is valid on every node of the cluster, which shares the keys)."""
    base = rtmp_url.rstrip("/")
    url = f"{base}/{quote(key.app, safe='/')}/{quote(key.name, safe='')}"
    return f"{url}?{query.lstrip('?')}" if query.lstrip("?") else url
