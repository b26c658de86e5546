"""The hub: one Stream per (vhost, app, stream) between every source and every viewer."""

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
