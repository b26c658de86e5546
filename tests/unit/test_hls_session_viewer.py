"""An HLS session's hub subscriber counts as a viewer but is not fanned out frames
(`Stream.count_only`): the stream's one HLS muxer reads the media for every session."""

from __future__ import annotations

from liverelay.config import MediaSettings
from liverelay.hub import Hub, SourceKind, StreamKey
from liverelay.media.codecs import make_frame
from liverelay.media.frame import FrameKind


def test_a_count_only_viewer_counts_and_gets_no_frames() -> None:
    hub = Hub(MediaSettings(viewer_flush_ms=0))
    k = StreamKey("v", "live", "s")
    pub = hub.publish(k, kind=SourceKind.PUBLISHER)
    pub.write(make_frame(FrameKind.VIDEO, 0, b"\x17\x00\x00\x00\x00avcC"))
    stream = hub.get(k)
    assert stream is not None
    session = stream.subscribe(protocol="hls", remote="r", query="")
    other = stream.subscribe(protocol="rtmp", remote="r2", query="")
    session.take(), other.take()  # the join bursts
    stream.count_only(session)
    for ts in range(0, 400, 40):
        pub.write(make_frame(FrameKind.VIDEO, ts, b"\x17\x01\x00\x00\x00" + bytes(50)))
    assert session.take() == [] and session.queued_frames == 0
    assert len([f for f in other.take() if not f.config]) == 10  # the others get everything
    assert stream.viewer_count == 2
    assert hub.viewers_by_protocol().get("hls") == 1
    session.close()
    assert stream.viewer_count == 1
    later = stream.subscribe(protocol="hls", remote="r3", query="")
    stream.count_only(later)
    pub.close("done")
    assert later.ended and later.end_reason == "eof"  # it still learns of the end
