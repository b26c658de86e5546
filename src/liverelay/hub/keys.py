"""Names shared by everything that talks to the hub."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class StreamKey(NamedTuple):
    vhost: str
    app: str
    name: str

    def __str__(self) -> str:
        return f"{self.vhost}/{self.app}/{self.name}"


class SourceKind(StrEnum):
    """Who writes a stream; decides who may take it over (see Hub.publish)."""

    PUBLISHER = "publisher"  # an RTMP push
    RELAY_PLAY = "relay_play"  # a V3 on-demand pull (a publisher or a fixed relay may take it over)
    RELAY_FIXED = "relay_fixed"  # a V4 scheduled pull


class StreamBusy(Exception):
    """The stream already has a source that may not be taken over."""

    def __init__(self, key: StreamKey, kind: SourceKind, owner: str) -> None:
        super().__init__(f"stream {key} is busy: {kind.value} source {owner!r}")
        self.key = key
        self.kind = kind
        self.owner = owner
