"""StreamControl on a real Hub (no sockets): forbid until resumed or expired, the list's
bound, kill closing the source and calling its owner's hook, the bounded history."""

from __future__ import annotations

from liverelay.config import MediaSettings
from liverelay.hub import Hub, SourceKind, StreamKey
from liverelay.streamctl import StreamControl

KEY = StreamKey("v", "live", "s")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_forbid_until_resumed_or_expired() -> None:
    clock = Clock()
    control = StreamControl(Hub(MediaSettings()), clock=clock)
    assert not control.is_forbidden(KEY)
    assert control.forbid(KEY, clock.now + 60)
    assert control.is_forbidden(KEY)
    assert not control.is_forbidden(StreamKey("v", "live", "other"))
    assert control.resume(KEY) and not control.is_forbidden(KEY)
    assert not control.resume(KEY)  # resuming twice is harmless
    control.forbid(KEY, clock.now + 60)
    clock.now += 60
    assert not control.is_forbidden(KEY)  # expired
    assert control.forbidden() == {}


def test_forbid_list_is_bounded_and_expired_entries_make_room() -> None:
    clock = Clock()
    control = StreamControl(Hub(MediaSettings()), max_forbidden=2, clock=clock)
    assert control.forbid(StreamKey("v", "a", "1"), clock.now + 10)
    assert control.forbid(StreamKey("v", "a", "2"), clock.now + 100)
    assert not control.forbid(StreamKey("v", "a", "3"), clock.now + 100)
    assert control.forbid(StreamKey("v", "a", "2"), clock.now + 200)  # an update is not a new entry
    clock.now += 10
    assert control.forbid(StreamKey("v", "a", "3"), clock.now + 100)
    assert set(control.forbidden()) == {StreamKey("v", "a", "2"), StreamKey("v", "a", "3")}
    entry = control.forbidden()[StreamKey("v", "a", "3")]
    assert (entry.since, entry.until) == (clock.now, clock.now + 100)


def test_kill_closes_the_source_and_calls_its_owner() -> None:
    hub = Hub(MediaSettings())
    control = StreamControl(hub)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER, owner="127.0.0.1:5000")
    ended: list[str] = []
    pub.on_preempted = lambda: ended.append("owner told")
    control.sample()
    assert control.kill(KEY)
    assert not pub.active and ended == ["owner told"]
    assert not control.kill(KEY)  # nothing live any more
    closed = control.closed()
    assert [(c.key, c.kind, c.owner, c.reason) for c in closed] == [
        (KEY, SourceKind.PUBLISHER, "127.0.0.1:5000", "killed")
    ]
    control.sample()
    assert len(control.closed()) == 1  # the kill is not recorded twice


def test_forbid_cuts_the_current_publisher_off() -> None:
    hub = Hub(MediaSettings())
    control = StreamControl(hub)
    pub = hub.publish(KEY, kind=SourceKind.PUBLISHER, owner="p")
    assert control.forbid(KEY, control.clock() + 60)
    assert not pub.active
    assert control.closed()[-1].reason == "forbidden"


def test_history_records_ended_sources_and_keeps_the_last_ones() -> None:
    hub = Hub(MediaSettings())
    control = StreamControl(hub, history=3)
    for i in range(5):
        key = StreamKey("v", "live", f"s{i}")
        pub = hub.publish(key, kind=SourceKind.RELAY_FIXED, owner=f"task{i}")
        control.sample()
        pub.close("done")
        control.sample()
    names = [c.key.name for c in control.closed()]
    assert names == ["s2", "s3", "s4"]
    assert all(c.reason == "ended" and c.kind is SourceKind.RELAY_FIXED for c in control.closed())
    assert all(c.end >= c.start for c in control.closed())
