"""What every source (puller) shares: the sink it writes to and the error it raises."""

from __future__ import annotations

from typing import Protocol

from ..media.frame import Frame

SOURCE_ERROR_REASONS = (
    "connect",
    "timeout",
    "protocol",
    "eof",
    "http_status",
    "process_exit",
    "policy",
    "unsupported",
)


class FrameSink(Protocol):
    def on_frame(self, frame: Frame) -> None: ...


class SourceError(Exception):
    """A source failed; `reason` is one of SOURCE_ERROR_REASONS (a metrics label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
