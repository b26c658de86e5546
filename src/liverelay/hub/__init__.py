"""The hub: one Stream per (vhost, app, stream) between every source and every viewer.

Writers: `Hub.publish(key, kind=, owner=) -> Publication` (StreamBusy when the current
source may not be taken over). `Publication.write(frame)`, `set_metadata(payload)`,
`discontinuity()`, `close(reason)`, `on_preempted` (called with no arguments when a
publisher or a fixed relay takes over a RELAY_PLAY source), `active`.

Readers: `await Hub.play(key, protocol=, remote=, query=, timeout=) -> Subscriber | None`.
`await Subscriber.read()` returns a batch (`[]` = end: `end_reason` is "eof", "slow"
or "closed"), `add_bytes_out(n)`, `close()`, and `on_drop` (called once, synchronously,
when the hub drops the viewer for being too slow: abort the socket there). Writers are
woken about every MediaSettings.viewer_flush_ms (50) of media, so one socket write
carries a few frames; held frames are flushed when the source pauses.

Stream (`Hub.get(key)`, `Hub.streams()`): `key`, `has_source`, `source_kind`, `owner`,
`viewer_count`, `add_viewer_listener(cb) -> remove`, `metadata` (AMF0 onMetaData body),
`video_header`/`audio_header`, `has_video`/`has_audio`, `stats()`, `bitrate()`.
`Stream.subscribe(protocol=, remote=, query=, counted=False)`: an internal reader (the
HLS muxer) that gets the frames but is left out of every viewer count and listener.

Inside the hub, the Stream talks to its owner through `protocols.StreamOwner` and a
Subscriber to its stream through `protocols.SubscriberHost`: public methods on purpose,
no private round trips. The timestamp maths is the pure `timeline` module.
"""

from .hub import Hub, PlayTrigger
from .keys import SourceKind, StreamBusy, StreamKey
from .stream import Publication, Stream
from .subscriber import Subscriber

__all__ = [
    "Hub",
    "PlayTrigger",
    "Publication",
    "SourceKind",
    "Stream",
    "StreamBusy",
    "StreamKey",
    "Subscriber",
]
