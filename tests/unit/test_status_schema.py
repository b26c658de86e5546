"""schemas.status: the relay status row on the wire (byte-for-byte as DescribeRelayStatus
sent it before the model existed), its round trip, and the State enum."""

from __future__ import annotations

import json
from typing import Any

import pytest

from liverelay.config import RelaySettings
from liverelay.hub import StreamKey
from liverelay.relay.pull import RelayPull
from liverelay.relay.scheduled import FixedRelaySpec, FixedTask
from liverelay.schemas.status import RelayState, RelayStatusReport, RelayStatusRow, RelayType

PLAY_KEYS = [
    "Type", "Vhost", "App", "Stream", "State", "SourceUrl", "SourceIndex", "Attempts", "LastError",
    "UpSince", "Bytes", "Bitrate", "Frames", "Viewers", "Switches", "TaskId",
]  # fmt: skip
FIXED_ONLY = {"Domain", "StartTime", "EndTime", "NextStart", "SrcAddrS"}


async def test_a_play_row_is_byte_for_byte_what_the_dict_was() -> None:
    pull = RelayPull(
        key=StreamKey("vh", "live", "s"),
        kind="play",
        urls=["rtmp://user:secret@127.0.0.1:1935/live/s?auth_key=k1"],
        publication_factory=lambda: pytest.fail("no media, no publication"),
        settings=RelaySettings(),
        viewers=lambda: 3,
    )
    # The dict relay/pull.py built before the model, for the same pull.
    before: dict[str, Any] = {
        "Type": "play", "Vhost": "vh", "App": "live", "Stream": "s", "State": "starting",
        "SourceUrl": "rtmp://user:***@127.0.0.1:1935/live/s?auth_key=***", "SourceIndex": 0,
        "Attempts": 0, "LastError": None, "UpSince": None, "Bytes": 0, "Bitrate": 0, "Frames": 0,
        "Viewers": 3, "Switches": 0, "TaskId": None,
    }  # fmt: skip
    wire = pull.status().wire()
    assert list(wire) == PLAY_KEYS
    assert json.dumps(wire) == json.dumps(before)
    pull.lingering = True
    pull.state = RelayState.UP
    assert pull.status().wire()["State"] == "lingering"


def test_round_trip_through_the_wire_shape() -> None:
    row = RelayStatusRow(
        type=RelayType.FIXED, vhost="v", app="a", stream="s", state=RelayState.RETRYING, source_url="",
        source_index=None, attempts=2, last_error="connect: refused", up_since=None, bytes=5, bitrate=0,
        frames=1, viewers=0, switches=0, task_id="t", domain="d", start_time=10, end_time=20,
        next_start=None, src_addrs=["rtmp://x/a/s"],
    )  # fmt: skip
    wire = row.wire()
    again = RelayStatusRow.model_validate(json.loads(json.dumps(wire)))
    assert again == row and json.dumps(again.wire()) == json.dumps(wire)
    assert set(wire) == set(PLAY_KEYS) | FIXED_ONLY


async def test_a_fixed_row_has_the_keys_it_always_had() -> None:
    spec = FixedRelaySpec("t1", "vh", "pull.example.com", "live", "s", ("srt://h:9000?passphrase=p",), 10, 20)
    task = FixedTask(spec, pull_factory=lambda _t: pytest.fail("not opened"), emit=lambda *a, **k: None)
    wire = task.status(viewers=2).wire()
    assert set(wire) == set(PLAY_KEYS) | FIXED_ONLY
    assert (wire["Type"], wire["TaskId"], wire["LastError"], wire["SourceIndex"], wire["Viewers"]) == (
        "fixed", "t1", "", None, 2,
    )  # fmt: skip
    assert wire["SrcAddrS"] == ["srt://h:9000?passphrase=***"]


def test_state_is_a_str_enum_serialised_as_todays_strings() -> None:
    assert [s.value for s in RelayState] == [
        "scheduled", "starting", "up", "lingering", "failing_over", "retrying", "ended",
    ]  # fmt: skip
    assert json.dumps({"State": RelayState.FAILING_OVER}) == '{"State": "failing_over"}'
    assert RelayState("up") is RelayState.UP and RelayState.UP == "up"
    with pytest.raises(ValueError):
        RelayState("running")
    assert [t.value for t in RelayType] == ["play", "fixed"]


def test_report_shows_an_error_only_when_a_part_failed() -> None:
    row = RelayStatusRow(type=RelayType.PLAY, stream="s")
    assert RelayStatusReport(rows=[row]).wire() == {"RelayStatusList": [{"Type": "play", "Stream": "s"}]}
    partial = RelayStatusReport(rows=[row], error="fixed relay status unavailable: RuntimeError").wire()
    assert partial["Error"] == "fixed relay status unavailable: RuntimeError"
