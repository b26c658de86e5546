"""RTMP viewer for the load client, on the project's own RtmpClientSession.

Every viewer does handshake + connect + createStream + play through the session.
A parsed viewer keeps feeding the session and reads every media message; a
counting viewer switches to counting bytes once NetStream.Play.Start arrives and
from then on only sends Acknowledgements with its running byte count (a server
may stop sending to a client that does not ack past the window it announced).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from liverelay.media.rtmp import RtmpClientSession
from liverelay.media.rtmp import messages as rtmp_messages
from liverelay.media.rtmp.errors import RtmpError
from liverelay.media.rtmp.events import (
    CommandFailed,
    ConnectFailed,
    MediaReceived,
    StatusEvent,
    StreamEof,
)

from .loadclient import Viewer


def split_rtmp_url(url: str) -> tuple[str, str, str]:
    """rtmp://host:port/app/name?query -> (tc_url, app, play name with query)."""
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    app, _, name = path.partition("/")
    if not app or not name:
        raise ValueError(f"RTMP URL needs /app/stream: {url}")
    if parts.query:
        name = f"{name}?{parts.query}"
    netloc = parts.netloc
    return f"{parts.scheme}://{netloc}/{app}", app, name


_PLAY_ENDED = (rtmp_messages.PLAY_STREAM_NOT_FOUND, rtmp_messages.PLAY_STOP)


class RtmpViewer(Viewer):
    protocol = "rtmp"
    default_port = 1935

    def __init__(self, index: int, url: str, *, parsed: bool, gap_log_s: float = 0.5) -> None:
        super().__init__(index, url, parsed=parsed, gap_log_s=gap_log_s)
        self.tc_url, self.app, self.name = split_rtmp_url(url)
        self.session: RtmpClientSession | None = None
        self.counting = False
        self.play_started_at: float | None = None
        self.eof = 0  # StreamEOF notices (publisher gone upstream)
        self._total = 0  # bytes received on this connection (for acks while counting)
        self._acked = 0

    def on_connected(self, transport: asyncio.Transport) -> None:
        super().on_connected(transport)
        self.counting = False
        self._total = self._acked = 0
        self.session = RtmpClientSession(app=self.app, tc_url=self.tc_url, play=self.name)
        self.session.initiate()
        transport.write(self.session.data_to_send())

    def on_data(self, data: bytes) -> None:
        st = self.stats
        if st.first_byte_at is None:
            st.first_byte_at = time.monotonic()
        st.bytes += len(data)
        self._total += len(data)
        session = self.session
        if session is None:
            return
        if self.counting:
            window = session.peer_window
            # Ack every half window so the server never waits on us.
            if window and self._total - self._acked >= window // 2 and self.transport is not None:
                self._acked = self._total
                self.transport.write(rtmp_messages.acknowledgement(self._total, session.chunk_size))
            return
        try:
            events = session.receive_data(data)
        except RtmpError as exc:
            self.fail(f"rtmp: {exc}")
            return
        out = session.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)
        frames = []
        for ev in events:
            if isinstance(ev, MediaReceived):
                frames.append(ev.frame)
            elif isinstance(ev, StatusEvent):
                if ev.code == rtmp_messages.PLAY_START:
                    self.play_started_at = time.monotonic()
                    if not self.parsed:
                        self.counting = True
                        self._acked = self._total
                        self.start_counting()
                elif st.error is None and (ev.level == "error" or ev.code in _PLAY_ENDED):
                    # Record why; the server decides whether the connection ends.
                    st.error = f"status {ev.code}"
            elif isinstance(ev, ConnectFailed | CommandFailed):
                self.fail(f"rtmp: {type(ev).__name__} {ev}")
                return
            elif isinstance(ev, StreamEof):
                self.eof += 1
        if frames:
            self.emit(frames)
