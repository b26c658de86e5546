"""H.265 over RTMP in both FLV conventions: codec id 12 (the widespread pre-Enhanced-RTMP
convention) and Enhanced RTMP (ExVideoTagHeader with FourCC hvc1).

ffmpeg 5.1 cannot mux HEVC into FLV in either convention, so the test builds the tags itself from an
ffmpeg/x265-encoded elementary stream (hvcC from VPS/SPS/PPS, length-prefixed NAL units),
publishes them with our client session over a real socket, plays them back through the
real listener with sources.rtmp, converts what arrived back to Annex B and lets ffprobe
decode every frame.
"""

from __future__ import annotations

import asyncio
import re
import struct
from pathlib import Path

import pytest
from tests.conftest import synthetic_source_args
from tests.integration.rtmp_helpers import RecordingSink, RtmpNode, RtmpTestClient, run_tool

from liverelay.media.codecs import make_frame
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.rtmp import messages as m
from liverelay.sources.rtmp import pull

FPS = 25
NAL_VPS, NAL_SPS, NAL_PPS = 32, 33, 34


def split_annexb(data: bytes) -> list[bytes]:
    starts = [mt.end() for mt in re.finditer(b"\x00\x00\x01", data)]
    nals = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        nals.append(data[start:end].rstrip(b"\x00"))
    return [n for n in nals if n]


def nal_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F


def hvcc_record(vps: bytes, sps: bytes, pps: bytes) -> bytes:
    """HEVCDecoderConfigurationRecord with the general profile/tier/level copied from the SPS."""
    rbsp = sps[:2] + sps[2:].replace(b"\x00\x00\x03", b"\x00\x00")
    ptl = rbsp[3:15]  # after the NAL header and the vps id / max sub layers byte
    out = bytes([1]) + ptl[:1] + ptl[1:5] + ptl[5:11] + ptl[11:12]
    out += struct.pack(">HBBBBHB", 0xF000, 0xFC, 0xFD, 0xF8, 0xF8, 0, 0x0F)
    out += bytes([3])
    for nal in (vps, sps, pps):
        out += bytes([0x80 | nal_type(nal)]) + struct.pack(">HH", 1, len(nal)) + nal
    return out


# Tag body prefixes: codec id 12 = frame type/codec byte + AVCPacketType + composition time;
# Enhanced RTMP = IsExHeader|FrameType|PacketType byte + FourCC (+ composition time for CodedFrames).
ENHANCED_SEQUENCE_START = bytes([0x80 | 0x10 | 0]) + b"hvc1"


def _video_header(convention: str, key: bool) -> bytes:
    if convention == "id12":
        return bytes([0x1C if key else 0x2C, 1, 0, 0, 0])
    return bytes([0x80 | (0x10 if key else 0x20) | 1]) + b"hvc1" + b"\x00\x00\x00"


def hevc_frames(es: bytes, convention: str = "id12") -> tuple[Frame, list[Frame]]:
    """(sequence header frame, coded frames) as FLV tag bodies in the given convention."""
    nals = split_annexb(es)
    params = {t: next(n for n in nals if nal_type(n) == t) for t in (NAL_VPS, NAL_SPS, NAL_PPS)}
    record = hvcc_record(params[NAL_VPS], params[NAL_SPS], params[NAL_PPS])
    prefix = b"\x1c\x00\x00\x00\x00" if convention == "id12" else ENHANCED_SEQUENCE_START
    config = make_frame(9, 0, prefix + record)
    pictures: list[list[bytes]] = []
    for nal in nals:
        t = nal_type(nal)
        if t < 32:  # VCL: first_slice_segment_in_pic_flag starts a picture
            if nal[2] & 0x80 or not pictures:
                pictures.append([])
            pictures[-1].append(nal)
    frames = []
    for i, pic in enumerate(pictures):
        key = 16 <= nal_type(pic[0]) <= 21
        body = b"".join(struct.pack(">I", len(n)) + n for n in pic)
        frames.append(make_frame(9, i * 1000 // FPS, _video_header(convention, key) + body))
    return config, frames


def to_annexb(config: Frame, frames: list[Frame]) -> bytes:
    enhanced = bool(config.payload[0] & 0x80)
    rec = config.payload[5:]  # both conventions: 5 bytes before the HEVCDecoderConfigurationRecord
    skip = 8 if enhanced else 5
    pos, out = 23, []
    for _ in range(rec[22]):
        (count,) = struct.unpack_from(">H", rec, pos + 1)
        pos += 3
        for _ in range(count):
            (n,) = struct.unpack_from(">H", rec, pos)
            out.append(b"\x00\x00\x00\x01" + rec[pos + 2 : pos + 2 + n])
            pos += 2 + n
    for f in frames:
        data, p = f.payload[skip:], 0
        while p + 4 <= len(data):
            (n,) = struct.unpack_from(">I", data, p)
            out.append(b"\x00\x00\x00\x01" + data[p + 4 : p + 4 + n])
            p += 4 + n
    return b"".join(out)


@pytest.fixture(scope="module")
def hevc_es(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> bytes:
    out = tmp_path_factory.mktemp("hevc") / "clip.hevc"
    import subprocess

    proc = subprocess.run(
        [
            *synthetic_source_args(ffmpeg, size="320x240", rate=FPS, seconds=2),
            *("-c:v", "libx265", "-x265-params", f"bframes=0:keyint={FPS}:log-level=error"),
            *("-f", "hevc", str(out)),
        ],
        capture_output=True,
        timeout=60,
    )
    if proc.returncode != 0:
        pytest.skip(f"this ffmpeg cannot encode HEVC with libx265: {proc.stderr.decode()[-200:]}")
    return out.read_bytes()


@pytest.mark.parametrize("convention", ["id12", "enhanced"])
async def test_hevc_publish_and_play(convention: str, hevc_es: bytes, ffprobe: str, tmp_path: Path) -> None:
    config, frames = hevc_frames(hevc_es, convention)
    # Debian's ffmpeg 5.1 demuxes neither HEVC-in-FLV convention, so ffmpeg cannot play this
    # stream straight from the node; what the node delivered is checked by converting it back
    # to Annex B for ffprobe instead.
    print(f"[hevc {convention}] direct ffmpeg playback not checked: needs ffmpeg >= 6.1 (enhanced FLV)")
    assert config.config and frames[0].keyframe and len(frames) == 2 * FPS
    assert sum(f.keyframe for f in frames) == 2
    node = await RtmpNode().start()
    publisher = RtmpTestClient(node.port, "live", publish="hevc")
    sink = RecordingSink()
    try:
        await publisher.connect()
        await publisher.pump_until(lambda: m.PUBLISH_START in publisher.codes(), 5)
        session = publisher.session
        for f in [config, *frames[:10]]:
            session.send_frame(f)
        await publisher.send(session.data_to_send())
        await node.wait_source(node.key(stream="hevc"))
        viewer = asyncio.create_task(pull(node.url(stream="hevc"), sink, settings=node.settings.relay))
        while not sink.frames:
            await asyncio.sleep(0.02)
        for f in frames[10:]:
            session.send_frame(f)
            await publisher.send(session.data_to_send())
        session.delete_stream(session.stream_id)
        await publisher.send(session.data_to_send())
        await asyncio.wait_for(viewer, 5)  # the publisher left: a clean end
    finally:
        publisher.close()
        await node.close()
    got_config = [f for f in sink.frames if f.kind == FrameKind.VIDEO and f.config]
    got = [f for f in sink.frames if f.kind == FrameKind.VIDEO and not f.config]
    assert [f.payload for f in got_config] == [config.payload]
    assert [f.payload for f in got] == [f.payload for f in frames], "every HEVC frame arrives intact"
    assert got[0].keyframe
    clip = tmp_path / "received.hevc"
    clip.write_bytes(to_annexb(got_config[0], got))
    rc, out, err = await run_tool(
        ffprobe,
        "-v",
        "error",
        "-count_frames",
        "-show_entries",
        "stream=codec_name,width,nb_read_frames",
        "-of",
        "compact",
        str(clip),
    )
    assert rc == 0 and err.strip() == "", err
    assert "codec_name=hevc|width=320" in out and f"nb_read_frames={len(frames)}" in out, out
