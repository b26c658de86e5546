"""PeerSources: which nodes a play-triggered pull may take a stream from, in which order."""

from __future__ import annotations

import dataclasses

from liverelay.cluster.peers import PeerSources
from liverelay.cluster.types import HeldSource, HeldStream, NodeRecord
from liverelay.hub import StreamKey
from liverelay.store.models import DomainRecord

KEY = StreamKey("vh", "live", "s")


def record(
    node_id: str, source: HeldSource | None, *, alive: bool = True, draining: bool = False
) -> NodeRecord:
    streams = [HeldStream("vh", "live", "s", source)] if source is not None else []
    return NodeRecord(
        node_id=node_id,
        api_url="",
        rtmp_url=f"rtmp://10.0.0.{len(node_id)}:19{len(node_id)}",
        http_url="",
        started_at=0,
        heartbeat_at=0,
        draining=draining,
        streams=[*streams, HeldStream("vh", "live", "other", "publish")],
        status=[],
        stats={},
        alive=alive,
    )


class Directory:
    def __init__(self, own: str, records: list[NodeRecord]) -> None:
        self.own = own
        self.records = records

    @property
    def node_id(self) -> str:
        return self.own

    def nodes(self) -> list[NodeRecord]:
        return list(self.records)


class Domains:
    def __init__(self, records: list[DomainRecord]) -> None:
        self.records = records

    def domains_of(self, vhost: str) -> list[DomainRecord]:
        return [r for r in self.records if r.vhost == vhost]


def test_only_live_primary_holders_other_than_this_node() -> None:
    records = [
        record("me", "publish"),  # this node
        record("dead", "fixed", alive=False),
        record("drain", "fixed", draining=True),
        record("relayed", "peer"),  # pulls from a peer itself: never a source
        record("none", None),
        record("fixed", "fixed"),
        record("origin", "origin"),
    ]
    peers = PeerSources(Directory("me", records), None, wait_s=9.0)
    assert sorted(r.node_id for r in peers.holders(KEY)) == ["fixed", "origin"]
    assert peers.holders(StreamKey("vh", "live", "missing")) == []
    assert peers.wait_s == 9.0


def test_order_is_stable_and_urls_carry_the_vhost_domain_and_query() -> None:
    records = [record(f"n{i}", "publish") for i in range(6)]
    first = PeerSources(Directory("me", records), None, wait_s=1.0).urls(KEY, "")
    again = PeerSources(Directory("me", list(reversed(records))), None, wait_s=1.0).urls(KEY, "")
    assert first == again and len(first) == 6
    # Another puller ranks the same holders differently (spread), but as stably.
    other = PeerSources(Directory("you", records), None, wait_s=1.0).urls(KEY, "")
    assert sorted(other) == sorted(first)
    domains = Domains(
        [
            DomainRecord("off.example", "pull-flv", "vh", "cn", 1, 0),
            DomainRecord("pull.example", "pull-flv", "vh", "cn", 0, 0),
        ]
    )
    [url] = PeerSources(Directory("me", records[:1]), domains, wait_s=1.0).urls(KEY, "?token=a%2Bb")
    assert url == "rtmp://10.0.0.2:192/live?vhost=pull.example/s?token=a%2Bb"
    [plain] = PeerSources(Directory("me", records[:1]), Domains([]), wait_s=1.0).urls(KEY, "")
    assert plain == "rtmp://10.0.0.2:192/live/s"


def test_a_new_heartbeat_round_is_read() -> None:
    directory = Directory("me", [record("a", "fixed")])
    peers = PeerSources(directory, None, wait_s=1.0)
    assert [r.node_id for r in peers.holders(KEY)] == ["a"]
    gone = record("a", None)
    directory.records = [_with_heartbeat(gone, 1000), _with_heartbeat(record("b", "origin"), 1000)]
    assert [r.node_id for r in peers.holders(KEY)] == ["b"]


def _with_heartbeat(r: NodeRecord, at: int) -> NodeRecord:
    return dataclasses.replace(r, heartbeat_at=at)
