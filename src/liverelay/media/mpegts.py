"""MPEG-2 Transport Stream (ISO 13818-1), sans-IO: Frames -> 188-byte packets and back.

`TsMuxer` writes the classic-HLS segments: PAT/PMT at the start of every segment
(`start_segment()`), then one PES per frame: H.264/H.265 in Annex-B with an access
unit delimiter and the parameter sets before every random-access picture, AAC
with an ADTS header. PTS/DTS are 90 kHz from the frame timestamp (+ the
composition offset for video) plus a fixed `PTS_OFFSET_90K`, so the PCR (the
DTS of the frame carrying it, without the offset) always leads them. Continuity
counters run on across segments, as they would in one long stream.

`TsDemuxer` is the native HLS puller's direction: feed() any split of TS bytes,
get `Frame`s (flags as media.codecs.make_frame would set them; AVC as AVCC with a
sequence header frame whenever SPS/PPS change; H.265 as Enhanced RTMP hvc1; AAC raw with
an AudioSpecificConfig frame). Malformed input raises `TsError` only; memory is
bounded by `max_pes_bytes` per elementary stream and 188 bytes of carry-over.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

from .codecs import make_frame
from .elementary import (
    AAC_FRAME_SAMPLES,
    AAC_SAMPLE_RATES,
    NAL_AUD,
    NAL_CLASSES,
    NAL_PARAMETER_SET,
    NAL_RANDOM_ACCESS,
    AacConfig,
    BitstreamError,
    VideoCodec,
    VideoConfig,
    VideoPacket,
    aac_config_tag,
    aac_frame_tag,
    aac_payload,
    adts_header,
    annexb,
    build_asc,
    build_avcc,
    build_hvcc,
    is_aud,
    is_parameter_set,
    is_random_access,
    nal_type,
    parse_asc,
    parse_video_config,
    parse_video_tag,
    split_annexb,
    split_length_prefixed,
    video_config_tag,
    video_frame_header,
)
from .frame import Frame, FrameKind

PACKET_SIZE = 188
SYNC = 0x47
PID_PAT = 0x0000
PID_PMT = 0x1000
PID_VIDEO = 0x0100
PID_AUDIO = 0x0101
STREAM_TYPE_AAC = 0x0F  # ADTS
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_H265 = 0x24
PTS_OFFSET_90K = 63000  # 700 ms, as ffmpeg's mpegts muxer: room for the PCR to lead
_WRAP = 1 << 33
_AUD_AVC = b"\x09\xf0"
_AUD_HEVC = b"\x46\x01\x50"


class TsError(ValueError):
    """The transport stream is malformed; the source carrying it should be ended."""


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ b) & 0xFF]
    return crc


def _timestamp_bytes(prefix: int, ts: int) -> bytes:
    ts %= _WRAP
    return bytes(
        [
            (prefix << 4) | ((ts >> 29) & 0x0E) | 1,
            (ts >> 22) & 0xFF,
            ((ts >> 14) & 0xFE) | 1,
            (ts >> 7) & 0xFF,
            ((ts << 1) & 0xFE) | 1,
        ]
    )


def _pcr_bytes(base: int) -> bytes:
    base %= _WRAP
    # 33-bit base, 6 reserved bits, 9-bit extension (0).
    return bytes(
        [
            (base >> 25) & 0xFF,
            (base >> 17) & 0xFF,
            (base >> 9) & 0xFF,
            (base >> 1) & 0xFF,
            ((base & 1) << 7) | 0x7E,
            0,
        ]
    )


def pes_packet(stream_id: int, pts: int, dts: int | None, payload: bytes) -> bytes:
    """One PES packet; video (0xE0) gets an unbounded length when it does not fit 16 bits."""
    if dts is not None and dts != pts:
        header = b"\x84\xc0\x0a" + _timestamp_bytes(3, pts) + _timestamp_bytes(1, dts)
    else:
        header = b"\x84\x80\x05" + _timestamp_bytes(2, pts)
    length = len(header) + len(payload)
    if length > 0xFFFF:
        if stream_id != 0xE0:
            raise TsError("audio PES too large")
        length = 0
    return b"\x00\x00\x01" + bytes([stream_id]) + length.to_bytes(2, "big") + header + payload


class TsMuxer:
    """Frames of one stream -> TS packets. Call `start_segment()` at each segment start."""

    def __init__(self, *, video: VideoCodec | None, audio: bool) -> None:
        if video is None and not audio:
            raise ValueError("a TS muxer needs at least one track")
        self.video = video
        self.audio = audio
        self.pcr_pid = PID_VIDEO if video is not None else PID_AUDIO
        self._cc: dict[int, int] = {}
        self._video_config: VideoConfig | None = None
        self._audio_config: AacConfig | None = None

    @property
    def video_config(self) -> VideoConfig | None:
        return self._video_config

    @property
    def audio_config(self) -> AacConfig | None:
        return self._audio_config

    def _next_cc(self, pid: int) -> int:
        cc = self._cc.get(pid, -1) + 1 & 0x0F
        self._cc[pid] = cc
        return cc

    def _psi(self, pid: int, section: bytes) -> bytes:
        body = section + crc32_mpeg2(section).to_bytes(4, "big")
        payload = b"\x00" + body  # pointer_field
        head = bytes([SYNC, 0x40 | (pid >> 8), pid & 0xFF, 0x10 | self._next_cc(pid)])
        return head + payload + b"\xff" * (184 - len(payload))

    def start_segment(self) -> bytes:
        """PAT + PMT: every segment starts with them so it decodes on its own."""
        pat = bytes(
            [0x00, 0xB0, 13, 0x00, 0x01, 0xC1, 0, 0, 0x00, 0x01, 0xE0 | (PID_PMT >> 8), PID_PMT & 0xFF]
        )
        streams = b""
        if self.video is not None:
            st = STREAM_TYPE_H265 if self.video is VideoCodec.HEVC else STREAM_TYPE_H264
            streams += bytes([st, 0xE0 | (PID_VIDEO >> 8), PID_VIDEO & 0xFF, 0xF0, 0])
        if self.audio:
            streams += bytes([STREAM_TYPE_AAC, 0xE0 | (PID_AUDIO >> 8), PID_AUDIO & 0xFF, 0xF0, 0])
        length = 9 + len(streams) + 4
        pmt = (
            bytes([0x02, 0xB0 | (length >> 8), length & 0xFF, 0x00, 0x01, 0xC1, 0, 0])
            + bytes([0xE0 | (self.pcr_pid >> 8), self.pcr_pid & 0xFF, 0xF0, 0])
            + streams
        )
        return self._psi(PID_PAT, pat) + self._psi(PID_PMT, pmt)

    def _packetize(self, pid: int, pes: bytes, pcr: int | None, random_access: bool) -> bytes:
        out = bytearray()
        pos, n = 0, len(pes)
        first = True
        while pos < n:
            af_body: bytes | None = None
            if first and (pcr is not None or random_access):
                flags = (0x10 if pcr is not None else 0) | (0x40 if random_access else 0)
                af_body = bytes([flags]) + (_pcr_bytes(pcr) if pcr is not None else b"")
            room = 184 - (1 + len(af_body) if af_body is not None else 0)
            remaining = n - pos
            if remaining < room:
                stuff = room - remaining
                if af_body is None:
                    af = b"\x00" if stuff == 1 else bytes([stuff - 1, 0]) + b"\xff" * (stuff - 2)
                else:
                    af_body += b"\xff" * stuff
                    af = bytes([len(af_body)]) + af_body
            else:
                af = b"" if af_body is None else bytes([len(af_body)]) + af_body
            take = 184 - len(af)
            afc = 0x30 if af else 0x10
            out += bytes([SYNC, (0x40 if first else 0) | (pid >> 8), pid & 0xFF, afc | self._next_cc(pid)])
            out += af
            out += pes[pos : pos + take]
            pos += take
            first = False
        return bytes(out)

    def mux(self, frame: Frame) -> bytes:
        """TS packets for one frame (b"" for config/metadata frames, which only update state)."""
        if frame.kind == FrameKind.VIDEO and self.video is not None:
            return self._mux_video(frame)
        if frame.kind == FrameKind.AUDIO and self.audio:
            return self._mux_audio(frame)
        return b""

    def _mux_video(self, frame: Frame) -> bytes:
        tag = parse_video_tag(frame.payload)
        if tag is None or tag.codec is not self.video:
            return b""
        if tag.packet is VideoPacket.CONFIG:
            self._video_config = parse_video_config(tag.codec, tag.data)
            return b""
        cfg = self._video_config
        if tag.packet is not VideoPacket.FRAMES or cfg is None:
            return b""
        codec = tag.codec
        nalus = split_length_prefixed(tag.data, cfg.length_size)
        types = [nal_type(codec, n) for n in nalus]
        rap = frame.keyframe or any(is_random_access(codec, t) for t in types)
        units: list[bytes] = [_AUD_HEVC if codec is VideoCodec.HEVC else _AUD_AVC]
        if rap and not any(is_parameter_set(codec, t) for t in types):
            units.extend(cfg.parameter_sets)
        units.extend(n for n, t in zip(nalus, types, strict=True) if not is_aud(codec, t))
        dts = frame.timestamp * 90
        pts = (frame.timestamp + tag.cts_ms) * 90
        pes = pes_packet(0xE0, pts + PTS_OFFSET_90K, dts + PTS_OFFSET_90K, annexb(units))
        return self._packetize(PID_VIDEO, pes, dts if self.pcr_pid == PID_VIDEO else None, rap)

    def _mux_audio(self, frame: Frame) -> bytes:
        aac = aac_payload(frame.payload)
        if aac is None:
            return b""
        is_config, data = aac
        if is_config:
            self._audio_config = parse_asc(data)
            return b""
        cfg = self._audio_config
        if cfg is None or not data:
            return b""
        pts = frame.timestamp * 90
        pes = pes_packet(0xC0, pts + PTS_OFFSET_90K, None, adts_header(cfg, len(data)) + data)
        pcr = pts if self.pcr_pid == PID_AUDIO else None
        return self._packetize(PID_AUDIO, pes, pcr, pcr is not None)


# ====================================================================== demuxer


@dataclass(slots=True)
class _Pes:
    stream_type: int
    buf: bytearray
    expected: int  # PES_packet_length + 6, or 0 when unbounded
    started: bool = False
    cc: int = -1


class TsDemuxer:
    """Incremental TS demuxer: feed() bytes -> Frames. Raises TsError (and keeps raising)."""

    def __init__(self, *, max_pes_bytes: int = 8 << 20) -> None:
        self._max_pes = max_pes_bytes
        self._carry = b""
        self._pmt_pid: int | None = None
        self._psi: dict[int, bytearray] = {}
        self._pes: dict[int, _Pes] = {}
        self._failed: TsError | None = None
        self._origin: int | None = None
        self._last: int | None = None
        self._video_sets: dict[int, bytes] = {}
        self._video_record: bytes | None = None
        self._aac: AacConfig | None = None
        self._aac_bits = -1  # ADTS header bits (byte 2, top of byte 3) that gave self._aac
        self.packets = 0
        self.frames = 0

    # -- public
    def feed(self, data: bytes) -> list[Frame]:
        if self._failed is not None:
            raise self._failed
        try:
            return self._feed(data)
        except TsError as exc:
            self._failed = exc
            raise
        except (BitstreamError, IndexError, ValueError) as exc:
            self._failed = TsError(f"malformed transport stream: {exc}")
            raise self._failed from exc

    def flush(self) -> list[Frame]:
        """End of a segment/stream: emit the PES still open (video PES are unbounded)."""
        if self._failed is not None:
            raise self._failed
        out: list[Frame] = []
        try:
            for pid, pes in self._pes.items():
                if pes.started and pes.buf:
                    out.extend(self._finish_pes(pid, pes))
                pes.buf = bytearray()
                pes.started = False
        except (BitstreamError, IndexError, ValueError) as exc:
            self._failed = exc if isinstance(exc, TsError) else TsError(f"malformed transport stream: {exc}")
            raise self._failed from exc
        _sort_frames(out)
        return out

    @property
    def buffered_bytes(self) -> int:
        """Bytes held between feeds (carry-over, open PES and PSI sections): what bounds memory."""
        return (
            len(self._carry)
            + sum(len(p.buf) for p in self._pes.values())
            + sum(len(b) for b in self._psi.values())
        )

    def reset_timeline(self) -> None:
        """After an EXT-X-DISCONTINUITY: unwrap the next timestamps without reference to the old ones."""
        self._last = None

    # -- internals
    def _feed(self, data: bytes) -> list[Frame]:
        buf = self._carry + data if self._carry else data
        n = len(buf)
        usable = n - n % PACKET_SIZE
        count = usable // PACKET_SIZE
        out: list[Frame] = []
        mv = memoryview(buf)
        # Header bytes of every packet at once (strided slices are C loops): the sync
        # bytes are checked in one comparison, and runs of packets continuing one PES are
        # found and copied without a Python step per packet (the native HLS puller's CPU).
        if buf[0:usable:PACKET_SIZE].count(SYNC) != count:
            for pos in range(0, usable, PACKET_SIZE):
                if buf[pos] != SYNC:
                    raise TsError(f"lost sync at byte {pos} (0x{buf[pos]:02x} instead of 0x47)")
        b1s = buf[1:usable:PACKET_SIZE]
        b2s = buf[2:usable:PACKET_SIZE]
        b3s = buf[3:usable:PACKET_SIZE]
        pes_by_pid = self._pes
        self.packets += count
        i = 0
        while i < count:
            b1, b3 = b1s[i], b3s[i]
            if not b1 & 0xC0 and b3 & 0x10:
                # A piece of a PES with a payload, no start: maybe continuing one in order.
                pid = ((b1 & 0x1F) << 8) | b2s[i]
                pes = pes_by_pid.get(pid)
                if (
                    pes is not None
                    and pes.started
                    and pes.cc >= 0
                    and b3 & 0x0F == (pes.cc + 1) & 0x0F
                    and pid != PID_PAT
                    and pid != self._pmt_pid
                ):
                    if not b3 & 0x20:  # payload only: maybe a run of them
                        run = _run_length(b1s, b2s, b3s, i, count)
                        if pes.expected:  # the packet that completes a bounded PES takes the slow path
                            run = min(run, (pes.expected - len(pes.buf) - 1) // (PACKET_SIZE - 4))
                        if run > 0:
                            end = i + run
                            pes.buf += _payloads(buf, i * PACKET_SIZE, end * PACKET_SIZE)
                            pes.cc = b3s[end - 1] & 0x0F
                            if len(pes.buf) > self._max_pes:
                                raise TsError(f"PES on PID {pid} exceeds {self._max_pes} bytes")
                            i = end
                            continue
                    else:
                        # Stuffing (an adaptation field) before the payload: how muxers end
                        # a PES, once per frame. What _packet does for it, without the call.
                        pos = i * PACKET_SIZE
                        start = pos + 5 + buf[pos + 4]
                        if start < pos + PACKET_SIZE:  # else no payload, or a bad length: _packet
                            pes.buf += mv[start : pos + PACKET_SIZE]
                            pes.cc = b3 & 0x0F
                            if len(pes.buf) > self._max_pes:
                                raise TsError(f"PES on PID {pid} exceeds {self._max_pes} bytes")
                            if pes.expected and len(pes.buf) >= pes.expected:
                                out.extend(self._finish_pes(pid, pes))
                                pes.started = False
                                pes.buf = bytearray()
                            i += 1
                            continue
            pos = i * PACKET_SIZE
            out.extend(self._packet(mv[pos : pos + PACKET_SIZE]))
            i += 1
        self._carry = bytes(buf[usable:])
        _sort_frames(out)
        return out

    def _packet(self, pkt: memoryview) -> list[Frame]:
        b1, b2, b3 = pkt[1], pkt[2], pkt[3]
        if b1 & 0x80:
            return []  # transport_error_indicator: the packet is known bad, skip it
        pusi = bool(b1 & 0x40)
        pid = ((b1 & 0x1F) << 8) | b2
        afc = (b3 >> 4) & 3
        cc = b3 & 0x0F
        pos = 4
        if afc & 2:
            af_len = pkt[4]
            if af_len > 183:
                raise TsError(f"adaptation field length {af_len} on PID {pid}")
            pos = 5 + af_len
        if not afc & 1 or pos >= PACKET_SIZE:
            return []
        payload = pkt[pos:]
        if pid == PID_PAT or pid == self._pmt_pid:
            self._section(pid, pusi, payload)
            return []
        pes = self._pes.get(pid)
        if pes is None:
            return []
        out: list[Frame] = []
        if pusi:
            if pes.started and pes.buf:
                out.extend(self._finish_pes(pid, pes))
            pes.buf = bytearray(payload)
            pes.started = True
            pes.expected = 0
            if len(payload) >= 6:
                if payload[0] != 0 or payload[1] != 0 or payload[2] != 1:
                    raise TsError(f"PES start code missing on PID {pid}")
                length = (payload[4] << 8) | payload[5]
                pes.expected = length + 6 if length else 0
        elif pes.started:
            if pes.cc >= 0 and cc != (pes.cc + 1) & 0x0F and cc != pes.cc:
                # A lost packet: the PES being assembled is unusable; wait for the next start.
                pes.started = False
                pes.buf = bytearray()
                pes.cc = cc
                return out
            pes.buf += payload
            if len(pes.buf) > self._max_pes:
                raise TsError(f"PES on PID {pid} exceeds {self._max_pes} bytes")
        pes.cc = cc
        if pes.started and pes.expected and len(pes.buf) >= pes.expected:
            out.extend(self._finish_pes(pid, pes))
            pes.started = False
            pes.buf = bytearray()
        return out

    def _section(self, pid: int, pusi: bool, payload: memoryview) -> None:
        if pusi:
            pointer = payload[0]
            if 1 + pointer > len(payload):
                raise TsError("PSI pointer field past the packet")
            self._psi[pid] = bytearray(payload[1 + pointer :])
        elif pid in self._psi:
            self._psi[pid] += payload
        else:
            return
        sec = self._psi[pid]
        if len(sec) > 4096:
            raise TsError("PSI section too long")
        if len(sec) < 3:
            return
        if sec[0] == 0xFF:
            del self._psi[pid]
            return
        length = ((sec[1] & 0x0F) << 8) | sec[2]
        if length > 1021:
            raise TsError(f"PSI section length {length}")
        if len(sec) < 3 + length:
            return
        section = bytes(sec[: 3 + length])
        del self._psi[pid]
        if length < 9:
            raise TsError("PSI section too short")
        if crc32_mpeg2(section[:-4]) != int.from_bytes(section[-4:], "big"):
            raise TsError(f"PSI CRC mismatch on PID {pid}")
        if pid == PID_PAT:
            self._pat(section)
        else:
            self._pmt(section)

    def _pat(self, section: bytes) -> None:
        if section[0] != 0x00:
            raise TsError("PID 0 carries no PAT")
        for i in range(8, len(section) - 4, 4):
            program = (section[i] << 8) | section[i + 1]
            if program != 0:  # 0 is the network PID
                self._pmt_pid = ((section[i + 2] & 0x1F) << 8) | section[i + 3]
                return

    def _pmt(self, section: bytes) -> None:
        if section[0] != 0x02:
            return
        info_len = ((section[10] & 0x0F) << 8) | section[11]
        pos = 12 + info_len
        end = len(section) - 4
        seen: set[int] = set()
        while pos + 5 <= end:
            st = section[pos]
            pid = ((section[pos + 1] & 0x1F) << 8) | section[pos + 2]
            es_len = ((section[pos + 3] & 0x0F) << 8) | section[pos + 4]
            pos += 5 + es_len
            if st in (STREAM_TYPE_H264, STREAM_TYPE_H265, STREAM_TYPE_AAC):
                seen.add(pid)
                cur = self._pes.get(pid)
                if cur is None or cur.stream_type != st:
                    self._pes[pid] = _Pes(st, bytearray(), 0)
        for pid in [p for p in self._pes if p not in seen]:
            del self._pes[pid]

    def _unwrap_ms(self, raw: int) -> int:
        if self._last is None:
            value = raw if self._origin is None else self._origin + ((raw - self._origin) % _WRAP)
        else:
            diff = (raw - self._last) % _WRAP
            if diff > _WRAP // 2:
                diff -= _WRAP
            value = self._last + diff
        if self._origin is None:
            self._origin = value
        self._last = value
        return max(0, (value - self._origin) // 90)

    def _finish_pes(self, pid: int, pes: _Pes) -> list[Frame]:
        data = bytes(pes.buf)
        if len(data) < 9 or data[:3] != b"\x00\x00\x01":
            raise TsError(f"PES on PID {pid} too short")
        flags = data[7]
        hlen = data[8]
        body_start = 9 + hlen
        if body_start > len(data):
            raise TsError(f"PES header on PID {pid} past its end")
        if not flags & 0x80:
            return []  # no PTS: nothing we can place on a timeline
        if hlen < 5:
            raise TsError("PES header too short for its PTS")
        pts = _read_ts(data[9:14])
        dts = _read_ts(data[14:19]) if (flags & 0xC0) == 0xC0 and hlen >= 10 else pts
        end = pes.expected if pes.expected else len(data)
        body = data[body_start:end]
        if pes.stream_type == STREAM_TYPE_AAC:
            return self._audio(pts, body)
        codec = VideoCodec.HEVC if pes.stream_type == STREAM_TYPE_H265 else VideoCodec.AVC
        return self._video(codec, pts, dts, body)

    def _video(self, codec: VideoCodec, pts: int, dts: int, body: bytes) -> list[Frame]:
        out: list[Frame] = []
        dts_ms = self._unwrap_ms(dts)
        cts_ms = ((pts - dts) % _WRAP) // 90
        if cts_ms > 10_000:
            cts_ms = 0  # PTS before DTS is malformed; do not invent a 26-hour offset
        # One pass over the frame's NAL units, which are joined once behind the tag header.
        classes = NAL_CLASSES[codec]
        parts: list[bytes] = [b""]  # [0]: the tag header, known at the end
        key = False
        sets_changed = False
        for nal in split_annexb(body):
            cls = classes[nal[0]]
            if cls == NAL_PARAMETER_SET:
                t = nal_type(codec, nal)
                if self._video_sets.get(t) != nal:
                    self._video_sets[t] = nal
                    sets_changed = True
            elif cls != NAL_AUD:
                if cls == NAL_RANDOM_ACCESS:
                    key = True
                parts.append(len(nal).to_bytes(4, "big"))
                parts.append(nal)
        if sets_changed:
            record = self._video_record_for(codec)
            if record is not None and record != self._video_record:
                self._video_record = record
                out.append(make_frame(FrameKind.VIDEO, dts_ms, video_config_tag(codec, record)))
        if len(parts) > 1 and self._video_record is not None:
            parts[0] = video_frame_header(codec, key, cts_ms)
            out.append(Frame(FrameKind.VIDEO, dts_ms, b"".join(parts), keyframe=key))
        self.frames += len(out)
        return out

    def _video_record_for(self, codec: VideoCodec) -> bytes | None:
        s = self._video_sets
        if codec is VideoCodec.HEVC:
            if 33 not in s or 34 not in s:
                return None
            return build_hvcc([s[32]] if 32 in s else [], [s[33]], [s[34]])
        if 7 not in s or 8 not in s:
            return None
        return build_avcc([s[7]], [s[8]])

    def _audio(self, pts: int, body: bytes) -> list[Frame]:
        out: list[Frame] = []
        base_ms = self._unwrap_ms(pts)
        view = memoryview(body)
        aac = self._aac
        pos = 0
        i = 0
        n = len(body)
        while pos + 7 <= n:
            b1, b2, b3 = body[pos + 1], body[pos + 2], body[pos + 3]
            if body[pos] != 0xFF or (b1 & 0xF0) != 0xF0:
                raise TsError("ADTS sync word missing")
            length = ((b3 & 3) << 11) | (body[pos + 4] << 3) | (body[pos + 5] >> 5)
            head = 7 if b1 & 1 else 9  # protection_absent: no CRC
            if length < head or pos + length > n:
                raise TsError(f"ADTS frame length {length} does not fit the PES")
            # The config bits (profile, sampling index, channels) are those of the last
            # header in nearly every frame: compare them before building a config.
            if aac is None or (b2 << 2 | b3 >> 6) != self._aac_bits:
                sr_index = (b2 >> 2) & 0x0F
                if sr_index >= len(AAC_SAMPLE_RATES):
                    raise TsError(f"ADTS sampling index {sr_index}")
                asc = build_asc((b2 >> 6) + 1, sr_index, ((b2 & 1) << 2) | (b3 >> 6))
                if aac is None or aac.record != asc:
                    aac = self._aac = parse_asc(asc)
                    out.append(make_frame(FrameKind.AUDIO, base_ms, aac_config_tag(asc)))
                self._aac_bits = b2 << 2 | b3 >> 6
            ts = base_ms + (i * AAC_FRAME_SAMPLES * 1000) // aac.sample_rate
            out.append(Frame(FrameKind.AUDIO, ts, _AAC_RAW + view[pos + head : pos + length]))
            pos += length
            i += 1
        self.frames += len(out)
        return out


_AAC_RAW = aac_frame_tag(b"")  # the tag header of a raw AAC frame

# Header byte 3 of consecutive packets of one PID: payload only, continuity counter + 1 each.
_CC_RUN = bytes(0x10 | (k & 0x0F) for k in range(16 + 4096))


def _run_length(b1s: bytes, b2s: bytes, b3s: bytes, i: int, count: int) -> int:
    """How many packets from `i` continue packet i's PES in order: same header bytes 1-2
    (PID, no start, no error), byte 3 payload-only with the continuity counter counting up.
    Compared as big integers (the first differing byte is found without a Python loop) over
    a window that grows fourfold while the run fills it, so a whole segment's buffer costs
    in proportion to the run, not to the packets after it."""
    limit = min(count - i, 4096)
    cc = b3s[i] & 0x0F
    h1, h2 = bytes((b1s[i],)), bytes((b2s[i],))
    n = min(limit, 64)
    while True:
        diff = (
            (int.from_bytes(b1s[i : i + n], "big") ^ int.from_bytes(h1 * n, "big"))
            | (int.from_bytes(b2s[i : i + n], "big") ^ int.from_bytes(h2 * n, "big"))
            | (int.from_bytes(b3s[i : i + n], "big") ^ int.from_bytes(_CC_RUN[cc : cc + n], "big"))
        )
        if diff:
            return n - 1 - (diff.bit_length() - 1) // 8  # bytes before the first difference
        if n >= limit:
            return n
        n = min(limit, 4 * n)


def _payloads(buf: bytes, start: int, end: int) -> bytearray:
    """The payloads of the payload-only packets in buf[start:end] (their 4-byte headers cut
    out by four strided deletions, each a C loop)."""
    out = bytearray(buf[start:end])
    for size in (PACKET_SIZE, PACKET_SIZE - 1, PACKET_SIZE - 2, PACKET_SIZE - 3):
        del out[::size]
    return out


def _read_ts(b: bytes) -> int:
    if len(b) < 5:
        raise TsError("truncated PTS/DTS")
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def _sort_frames(frames: list[Frame]) -> None:
    """By timestamp; decoder configs first among frames of one instant, so a consumer has
    every track's config by the first keyframe (the audio config otherwise trails a video
    PES at t=0). Two stable sorts on C-level keys (configs to the front, then by
    timestamp): the order of one sort on (timestamp, not config) without a Python call
    per frame."""
    frames.sort(key=_CONFIG, reverse=True)
    frames.sort(key=_TIMESTAMP)


_CONFIG = attrgetter("config")
_TIMESTAMP = attrgetter("timestamp")
