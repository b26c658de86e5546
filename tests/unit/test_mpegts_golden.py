"""The TS demuxer's frames on byte fixtures are exactly the frames of the demuxer before
its fast paths (whole-segment runs, one-pass Annex-B and ADTS splitting): same order,
timestamps, keyframe/config flags and payload bytes, and the same error where the input
is bad.

The expected frames are in tests/fixtures/hls/demux_golden.json, written by the demuxer
of main 504663d (before the fast paths) with
`PYTHONPATH=<that tree>/src:. python tests/unit/test_mpegts_golden.py --write`.
Inputs: two nginx-rtmp HLS segments (H.264 + AAC; adaptation fields for stuffing and
PCR), the HEVC capture, a segment of our own muxer; each fed whole and in pieces, and
with the faults a puller meets: a lost packet (continuity jump), a duplicated packet, a
packet flagged with transport_error_indicator, a PES cut across two segments, a
discontinuity (reset_timeline, timestamps going back), a lost sync byte and a broken
ADTS header.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.unit.test_mpegts_fuzz import AVC_TS

from liverelay.media.frame import Frame
from liverelay.media.mpegts import PACKET_SIZE, TsDemuxer, TsError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GOLDEN = FIXTURES / "hls" / "demux_golden.json"
NGINX_1 = (FIXTURES / "hls" / "nginx_h264_aac_1.ts").read_bytes()
NGINX_2 = (FIXTURES / "hls" / "nginx_h264_aac_2.ts").read_bytes()
HEVC = (FIXTURES / "hls" / "tiny_hevc_aac.ts").read_bytes()


OURS = AVC_TS  # our own muxer's segment of the tiny H.264 + AAC sample

# A step of a case: bytes to feed in pieces of `split` (0: whole), or "flush" / "reset".
Step = tuple[bytes, int] | str


def _packets(data: bytes) -> list[bytes]:
    return [data[i : i + PACKET_SIZE] for i in range(0, len(data), PACKET_SIZE)]


def _nth_payload_only(data: bytes, pid: int, nth: int) -> int:
    """Index of the nth packet of `pid` that continues a PES (no start, payload only)."""
    seen = 0
    for i, p in enumerate(_packets(data)):
        if ((p[1] & 0x1F) << 8 | p[2]) == pid and not p[1] & 0x40 and p[3] & 0x30 == 0x10:
            if seen == nth:
                return i
            seen += 1
    raise AssertionError("no such packet")


def _drop(data: bytes, index: int) -> bytes:
    pk = _packets(data)
    return b"".join(pk[:index] + pk[index + 1 :])


def _dup(data: bytes, index: int) -> bytes:
    pk = _packets(data)
    return b"".join(pk[: index + 1] + pk[index:])


def _patch(data: bytes, pos: int, value: int) -> bytes:
    out = bytearray(data)
    out[pos] = value
    return bytes(out)


def _audio_pes_body_at(data: bytes) -> int:
    """Byte offset of the first ADTS header in the first audio PES of an nginx segment."""
    for i, p in enumerate(_packets(data)):
        if ((p[1] & 0x1F) << 8 | p[2]) == 0x101 and p[1] & 0x40:
            pos = 4 + (1 + p[4] if p[3] & 0x20 else 0)
            return i * PACKET_SIZE + pos + 9 + p[pos + 8]
    raise AssertionError("no audio PES")


def cases() -> dict[str, list[Step]]:
    lost = _drop(NGINX_1, _nth_payload_only(NGINX_1, 0x100, 40))
    dup = _dup(NGINX_1, _nth_payload_only(NGINX_1, 0x100, 60))
    tei_at = _nth_payload_only(NGINX_1, 0x100, 20) * PACKET_SIZE + 1
    tei = _patch(NGINX_1, tei_at, NGINX_1[tei_at] | 0x80)
    cut = (len(NGINX_1) // PACKET_SIZE // 2) * PACKET_SIZE + 5 * PACKET_SIZE
    adts_at = _audio_pes_body_at(NGINX_1)
    return {
        "nginx_whole": [(NGINX_1, 0), "flush"],
        "nginx_64k": [(NGINX_1, 65536), "flush"],
        "nginx_odd_pieces": [(NGINX_1, 7 * PACKET_SIZE + 3), "flush"],
        "nginx_small_pieces": [(NGINX_1, 1000), "flush"],
        "nginx_two_segments": [(NGINX_1, 0), "flush", (NGINX_2, 0), "flush"],
        "nginx_discontinuity": [(NGINX_2, 0), "flush", "reset", (NGINX_1, 0), "flush"],
        "nginx_pes_across_segments": [(NGINX_1[:cut], 0), "flush", (NGINX_1[cut:] + NGINX_2, 0), "flush"],
        "nginx_pes_across_feeds": [(NGINX_1[:cut], 0), (NGINX_1[cut:], 0), "flush"],
        "nginx_lost_packet": [(lost, 0), "flush"],
        "nginx_duplicate_packet": [(dup, 0), "flush"],
        "nginx_tei_packet": [(tei, 0), "flush"],
        "nginx_lost_sync": [(_patch(NGINX_1, 100 * PACKET_SIZE, 0x48), 0), "flush"],
        "nginx_lost_sync_pieces": [(_patch(NGINX_1, 100 * PACKET_SIZE, 0x48), 4096), "flush"],
        "nginx_bad_adts": [(_patch(NGINX_1, adts_at, 0x00), 0), "flush"],
        "hevc_whole": [(HEVC, 0), "flush"],
        "hevc_pieces": [(HEVC, 1000), "flush"],
        "ours_whole": [(OURS, 0), "flush"],
        "ours_pieces": [(OURS, 4096), "flush"],
    }


def _digest(frame: Frame) -> list[object]:
    return [
        int(frame.kind),
        frame.timestamp,
        frame.keyframe,
        frame.config,
        len(frame.payload),
        hashlib.sha256(bytes(frame.payload)).hexdigest()[:20],
    ]


def run_case(steps: list[Step]) -> dict[str, object]:
    demux = TsDemuxer()
    frames: list[Frame] = []
    error = None
    try:
        for step in steps:
            if step == "flush":
                frames += demux.flush()
            elif step == "reset":
                demux.reset_timeline()
            else:
                assert isinstance(step, tuple)
                data, split = step
                for i in range(0, len(data), split or len(data)):
                    frames += demux.feed(data[i : i + (split or len(data))])
    except TsError as exc:
        error = str(exc)
    return {"frames": [_digest(f) for f in frames], "error": error}


def _golden() -> dict[str, dict[str, object]]:
    loaded: dict[str, dict[str, object]] = json.loads(GOLDEN.read_text())
    return loaded


@pytest.mark.parametrize("name", sorted(cases()))
def test_frames_match_the_demuxer_before_the_fast_paths(name: str) -> None:
    expected = _golden()[name]
    got = run_case(cases()[name])
    assert got["error"] == expected["error"]
    assert got["frames"] == expected["frames"]


def test_the_golden_cases_are_not_trivial() -> None:
    golden = _golden()
    assert set(golden) == set(cases())
    whole = golden["nginx_whole"]["frames"]
    assert isinstance(whole, list) and len(whole) > 50
    assert any(f[2] for f in whole) and any(f[3] for f in whole)  # keyframes and configs
    # The faults change the output (the cases exercise the paths they name).
    for fault in ("nginx_lost_packet", "nginx_duplicate_packet", "nginx_tei_packet"):
        assert golden[fault]["frames"] != whole, fault
    assert golden["nginx_lost_sync"]["error"] and golden["nginx_bad_adts"]["error"]


def _write(out: Callable[[str], object]) -> None:
    golden = {name: run_case(steps) for name, steps in sorted(cases().items())}
    GOLDEN.write_text(json.dumps(golden, indent=0, sort_keys=True) + "\n")
    out(f"wrote {GOLDEN} ({len(golden)} cases)")


if __name__ == "__main__" and "--write" in sys.argv:
    _write(print)
