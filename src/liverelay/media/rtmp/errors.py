"""The one exception the sans-IO RTMP code raises."""

from __future__ import annotations


class RtmpError(Exception):
    """The peer broke the protocol or a limit; `reason` is short and fit for a log line."""

    def __init__(self, reason: str, *, internal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # True when the cause was an unexpected exception in our code (a bug, not the peer):
        # still only this connection ends, but tests and logs can tell the two apart.
        self.internal = internal
