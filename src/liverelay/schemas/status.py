"""The relay status row: one model for relay/, the DescribeRelayStatus action, the CLI and /metrics.

Wire shape (PascalCase, the DescribeRelayStatus `RelayStatusList` items) - a play-triggered
(V3) row carries exactly these keys, in this order:

    Type, Vhost, App, Stream, State, SourceUrl, SourceIndex, Attempts, LastError,
    UpSince, Bytes, Bitrate, Frames, Viewers, Switches, TaskId

and a fixed (V4) row adds Domain, StartTime, EndTime, NextStart and SrcAddrS.
`wire()` dumps only the fields the builder set (`exclude_unset`), so each kind keeps
its own key set; builders in relay/ always set every field of their kind.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RelayType(StrEnum):
    PLAY = "play"  # V3, play-triggered
    FIXED = "fixed"  # V4, scheduled / permanent


class RelayState(StrEnum):
    """What a relay is doing; a str enum so it serialises as the strings the API always had."""

    SCHEDULED = "scheduled"  # V4: window not open yet
    STARTING = "starting"  # connecting, no media yet
    UP = "up"  # media flows
    LINGERING = "lingering"  # V3: up, no viewers, waiting out linger_s
    FAILING_OVER = "failing_over"  # lost its origin, trying the next one
    RETRYING = "retrying"  # a full round failed: backing off
    ENDED = "ended"  # stopped (V3: gone; V4: window over or deleted)


class RelayStatusRow(BaseModel):
    """One DescribeRelayStatus row. Python names snake_case, wire names PascalCase aliases."""

    # Extra keys pass through unchanged (a part may add a field before the model names it).
    model_config = ConfigDict(populate_by_name=True, extra="allow", use_enum_values=False)

    type: RelayType = Field(RelayType.PLAY, alias="Type")
    vhost: str = Field("", alias="Vhost")
    app: str = Field("", alias="App")
    stream: str = Field("", alias="Stream")
    state: RelayState = Field(RelayState.STARTING, alias="State")
    source_url: str = Field("", alias="SourceUrl")  # redacted (sources.base.redact_url)
    source_index: int | None = Field(None, alias="SourceIndex")
    attempts: int = Field(0, alias="Attempts")
    last_error: str | None = Field(None, alias="LastError")  # redacted
    up_since: str | None = Field(None, alias="UpSince")  # RFC 3339 UTC, None when not up
    bytes: int = Field(0, alias="Bytes")
    bitrate: int = Field(0, alias="Bitrate")  # bits per second, sampled about once a second
    frames: int = Field(0, alias="Frames")
    viewers: int = Field(0, alias="Viewers")
    switches: int = Field(0, alias="Switches")
    task_id: str | None = Field(None, alias="TaskId")  # V4 only (None on V3 rows)
    # V4 only: the task's domain, window (Unix seconds), next start and its (redacted) sources.
    domain: str | None = Field(None, alias="Domain")
    start_time: int | None = Field(None, alias="StartTime")
    end_time: int | None = Field(None, alias="EndTime")
    next_start: int | None = Field(None, alias="NextStart")
    src_addrs: list[str] | None = Field(None, alias="SrcAddrS")

    def wire(self) -> dict[str, Any]:
        """The row as the API sends it (PascalCase, enums as their strings' str subclass)."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class RelayStatusReport(BaseModel):
    """What RelayManager.status() returns: the rows, and why some are missing.

    `error` is set when a part of the relays (today: the fixed relays) could not report:
    the rows of the other parts are still returned, and DescribeRelayStatus adds
    `"Error": "<text>"` next to `RelayStatusList` so a partial answer is visible.
    """

    rows: list[RelayStatusRow] = Field(default_factory=list)
    error: str | None = None

    def wire(self) -> dict[str, Any]:
        result: dict[str, Any] = {"RelayStatusList": [row.wire() for row in self.rows]}
        if self.error is not None:
            result["Error"] = self.error
        return result
