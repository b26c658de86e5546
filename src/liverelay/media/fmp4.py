"""Fragmented MP4 / CMAF (ISO 14496-12, ISO 23000-19), sans-IO: Frames -> init segment + fragments.

`init_segment(video, audio)` is the ftyp+moov (avc1/hvc1 with avcC/hvcC, mp4a with
esds, an mvex/trex per track) that EXT-X-MAP points at. `Fmp4Writer` collects the
Frames of one stream and, on `fragment(end_ms)`, returns one moof+mdat holding every
sample added since the last fragment (the LL-HLS part; a segment is its parts
concatenated). Video is on a 90 kHz timescale with DTS/CTS from the frame timestamp
and the composition offset; AAC is on its sample rate with 1024-sample frames and a
decode time kept continuous while the frame timestamps agree with it (within two
frames), re-anchored otherwise.

A video sample's duration is the distance to the next video frame, so the last
sample of a fragment needs `end_ms`: the timestamp of the frame that starts the next
fragment (or an estimate at the end of the stream).

`Fmp4Demuxer` is the native HLS puller's direction for fMP4 sources: `init()` with the
EXT-X-MAP resource, then `segment()` per segment/part; Frames out, `Fmp4Error` only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .codecs import make_frame
from .elementary import (
    AAC_FRAME_SAMPLES,
    AacConfig,
    BitstreamError,
    VideoCodec,
    VideoConfig,
    VideoPacket,
    aac_config_tag,
    aac_frame_tag,
    aac_payload,
    check_length_prefixed,
    parse_asc,
    parse_video_config,
    parse_video_tag,
    video_config_tag,
    video_frame_tag,
)
from .frame import Frame, FrameKind

VIDEO_TRACK_ID = 1
AUDIO_TRACK_ID = 2
VIDEO_TIMESCALE = 90000
MOVIE_TIMESCALE = 1000
SAMPLE_FLAGS_SYNC = 0x02000000  # sample_depends_on = 2 (independent)
SAMPLE_FLAGS_NON_SYNC = 0x01010000  # depends on others, is_non_sync_sample
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_U32 = struct.Struct(">I")


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return _U32.pack(8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, _U32.pack((version << 24) | flags), *payload)


def _descriptor(tag: int, body: bytes) -> bytes:
    n = len(body)
    # Four-byte expandable size (0x80 continuation bits) as most muxers write it.
    size = bytes([0x80 | ((n >> 21) & 0x7F), 0x80 | ((n >> 14) & 0x7F), 0x80 | ((n >> 7) & 0x7F), n & 0x7F])
    return bytes([tag]) + size + body


def _esds(cfg: AacConfig) -> bytes:
    dsi = _descriptor(0x05, cfg.record)
    dcd = _descriptor(0x04, bytes([0x40, 0x15]) + b"\x00\x00\x00" + _U32.pack(0) + _U32.pack(0) + dsi)
    es = _descriptor(0x03, b"\x00\x00\x00" + dcd + _descriptor(0x06, b"\x02"))
    return full_box(b"esds", 0, 0, es)


def _sample_entry_video(cfg: VideoConfig) -> bytes:
    kind, rec = (b"hvc1", b"hvcC") if cfg.codec is VideoCodec.HEVC else (b"avc1", b"avcC")
    return box(
        kind,
        b"\x00" * 6,
        struct.pack(">H", 1),
        b"\x00" * 16,
        struct.pack(">HHIIIH", cfg.width & 0xFFFF, cfg.height & 0xFFFF, 0x00480000, 0x00480000, 0, 1),
        b"\x00" * 32,
        struct.pack(">Hh", 0x0018, -1),
        box(rec, cfg.record),
    )


def _sample_entry_audio(cfg: AacConfig) -> bytes:
    rate = cfg.sample_rate if cfg.sample_rate < 65536 else 0
    return box(
        b"mp4a",
        b"\x00" * 6,
        struct.pack(">H", 1),
        b"\x00" * 8,
        struct.pack(">HHHHI", max(cfg.channels, 1), 16, 0, 0, rate << 16),
        _esds(cfg),
    )


def _trak(track_id: int, timescale: int, handler: bytes, entry: bytes, width: int, height: int) -> bytes:
    audio = handler == b"soun"
    tkhd = full_box(
        b"tkhd",
        0,
        3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, track_id, 0, 0),
        b"\x00" * 8,
        struct.pack(">hhhH", 0, 0, 0x0100 if audio else 0, 0),
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0))
    name = b"SoundHandler\x00" if audio else b"VideoHandler\x00"
    hdlr = full_box(b"hdlr", 0, 0, _U32.pack(0), handler, b"\x00" * 12, name)
    media_header = full_box(b"smhd", 0, 0, b"\x00" * 4) if audio else full_box(b"vmhd", 0, 1, b"\x00" * 8)
    dinf = box(b"dinf", full_box(b"dref", 0, 0, _U32.pack(1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, _U32.pack(1), entry),
        full_box(b"stts", 0, 0, _U32.pack(0)),
        full_box(b"stsc", 0, 0, _U32.pack(0)),
        full_box(b"stsz", 0, 0, _U32.pack(0), _U32.pack(0)),
        full_box(b"stco", 0, 0, _U32.pack(0)),
    )
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", media_header, dinf, stbl)))


def init_segment(video: VideoConfig | None, audio: AacConfig | None) -> bytes:
    """ftyp + moov for the given tracks (video is track 1, audio track 2)."""
    if video is None and audio is None:
        raise ValueError("an init segment needs at least one track")
    ftyp = box(b"ftyp", b"iso6", _U32.pack(0), b"iso6", b"cmfc", b"isom", b"mp41")
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH", 0, 0, MOVIE_TIMESCALE, 0, 0x00010000, 0x0100),
        b"\x00" * 10,
        _MATRIX,
        b"\x00" * 24,
        _U32.pack(3),
    )
    traks: list[bytes] = []
    trexs: list[bytes] = []
    if video is not None:
        traks.append(
            _trak(
                VIDEO_TRACK_ID,
                VIDEO_TIMESCALE,
                b"vide",
                _sample_entry_video(video),
                video.width,
                video.height,
            )
        )
        trexs.append(full_box(b"trex", 0, 0, struct.pack(">IIIII", VIDEO_TRACK_ID, 1, 0, 0, 0)))
    if audio is not None:
        traks.append(_trak(AUDIO_TRACK_ID, audio.sample_rate, b"soun", _sample_entry_audio(audio), 0, 0))
        trexs.append(full_box(b"trex", 0, 0, struct.pack(">IIIII", AUDIO_TRACK_ID, 1, 0, 0, 0)))
    return ftyp + box(b"moov", mvhd, *traks, box(b"mvex", *trexs))


@dataclass(slots=True)
class Sample:
    data: bytes
    duration: int  # track timescale
    cts: int = 0  # composition offset, track timescale
    sync: bool = True


@dataclass(slots=True)
class TrackRun:
    track_id: int
    base_decode_time: int
    samples: list[Sample]


def fragment(sequence: int, runs: list[TrackRun]) -> bytes:
    """moof + mdat for the given runs (empty runs are left out)."""
    runs = [r for r in runs if r.samples]
    if not runs:
        raise ValueError("a fragment needs at least one sample")

    def trafs(offsets: list[int]) -> list[bytes]:
        out = []
        for run, offset in zip(runs, offsets, strict=True):
            entries = b"".join(
                struct.pack(
                    ">IIIi",
                    s.duration,
                    len(s.data),
                    SAMPLE_FLAGS_SYNC if s.sync else SAMPLE_FLAGS_NON_SYNC,
                    s.cts,
                )
                for s in run.samples
            )
            out.append(
                box(
                    b"traf",
                    full_box(b"tfhd", 0, 0x020000, _U32.pack(run.track_id)),  # default-base-is-moof
                    full_box(b"tfdt", 1, 0, struct.pack(">Q", run.base_decode_time)),
                    # data offset, duration, size, flags, composition offset (v1: signed)
                    full_box(b"trun", 1, 0x000F01, struct.pack(">Ii", len(run.samples), offset), entries),
                )
            )
        return out

    mfhd = full_box(b"mfhd", 0, 0, _U32.pack(sequence))
    moof_size = len(box(b"moof", mfhd, *trafs([0] * len(runs))))
    offsets = []
    pos = moof_size + 8
    for run in runs:
        offsets.append(pos)
        pos += sum(len(s.data) for s in run.samples)
    moof = box(b"moof", mfhd, *trafs(offsets))
    mdat = box(b"mdat", *(s.data for run in runs for s in run.samples))
    return moof + mdat


@dataclass(slots=True)
class _PendingVideo:
    dts_ms: int
    cts_ms: int
    data: bytes
    sync: bool


class Fmp4Writer:
    """Frames of one stream -> fMP4 fragments. Config frames update `video_config`/`audio_config`;
    `config_version` increases whenever either changes (a new init segment is due)."""

    def __init__(self, *, video: VideoCodec | None, audio: bool) -> None:
        self.video = video
        self.audio = audio
        self.video_config: VideoConfig | None = None
        self.audio_config: AacConfig | None = None
        self.config_version = 0
        self.sequence = 0
        self._video: list[_PendingVideo] = []
        self._audio: list[bytes] = []
        self._audio_start: int | None = None  # decode time (sample-rate units) of _audio[0]
        self._audio_next: int | None = None  # decode time expected for the next AAC frame

    @property
    def pending_samples(self) -> int:
        return len(self._video) + len(self._audio)

    @property
    def first_pending_ms(self) -> int | None:
        """Timestamp of the earliest sample not yet in a fragment (video first)."""
        if self._video:
            return self._video[0].dts_ms
        if self._audio_start is not None and self.audio_config is not None:
            return self._audio_start * 1000 // self.audio_config.sample_rate
        return None

    def init_segment(self) -> bytes:
        return init_segment(
            self.video_config if self.video is not None else None,
            self.audio_config if self.audio else None,
        )

    def ready(self) -> bool:
        """True once every expected track has its decoder config."""
        return (self.video is None or self.video_config is not None) and (
            not self.audio or self.audio_config is not None
        )

    def add(self, frame: Frame) -> None:
        if frame.kind == FrameKind.VIDEO and self.video is not None:
            tag = parse_video_tag(frame.payload)
            if tag is None or tag.codec is not self.video:
                return
            if tag.packet is VideoPacket.CONFIG:
                cfg = parse_video_config(tag.codec, tag.data)
                if self.video_config is None or cfg.record != self.video_config.record:
                    self.video_config = cfg
                    self.config_version += 1
                return
            if tag.packet is VideoPacket.FRAMES and self.video_config is not None and tag.data:
                # A sample with broken NAL framing would poison the whole fragment for players.
                check_length_prefixed(tag.data, self.video_config.length_size)
                self._video.append(_PendingVideo(frame.timestamp, tag.cts_ms, tag.data, frame.keyframe))
        elif frame.kind == FrameKind.AUDIO and self.audio:
            aac = aac_payload(frame.payload)
            if aac is None:
                return
            is_config, data = aac
            if is_config:
                cfg_a = parse_asc(data)
                if self.audio_config is None or cfg_a.record != self.audio_config.record:
                    self.audio_config = cfg_a
                    self.config_version += 1
                    self._audio_next = None
                return
            if self.audio_config is None or not data:
                return
            rate = self.audio_config.sample_rate
            t = frame.timestamp * rate // 1000
            nxt = self._audio_next
            if nxt is None or abs(t - nxt) > 2 * AAC_FRAME_SAMPLES:
                nxt = t  # first frame or the timestamps jumped: re-anchor on them
            if not self._audio:
                self._audio_start = nxt
            self._audio.append(data)
            self._audio_next = nxt + AAC_FRAME_SAMPLES

    def fragment(self, end_ms: int) -> bytes | None:
        """moof+mdat of everything added since the last fragment; None when nothing is pending.
        `end_ms` closes the last video sample (the next video frame's timestamp)."""
        runs: list[TrackRun] = []
        if self._video:
            samples = []
            vids = self._video
            for i, v in enumerate(vids):
                nxt = vids[i + 1].dts_ms if i + 1 < len(vids) else max(end_ms, v.dts_ms + 1)
                samples.append(Sample(v.data, max(nxt - v.dts_ms, 1) * 90, v.cts_ms * 90, v.sync))
            runs.append(TrackRun(VIDEO_TRACK_ID, vids[0].dts_ms * 90, samples))
            self._video = []
        if self._audio and self._audio_start is not None:
            samples = [Sample(a, AAC_FRAME_SAMPLES) for a in self._audio]
            runs.append(TrackRun(AUDIO_TRACK_ID, self._audio_start, samples))
            self._audio = []
            self._audio_start = None
        if not runs:
            return None
        self.sequence += 1
        return fragment(self.sequence, runs)


# ====================================================================== demuxer


class Fmp4Error(ValueError):
    """The fMP4 data is malformed or unsupported; the source carrying it should be ended."""


_MAX_SAMPLES = 1 << 17  # per trun: far above any real fragment, bounds the work per input
_SAMPLE_NON_SYNC = 0x00010000


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, body start, body end) of the boxes tiling data[start:end]."""
    out = []
    pos = start
    while pos < end:
        if pos + 8 > end:
            raise Fmp4Error("truncated box header")
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > end:
                raise Fmp4Error("truncated large box header")
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise Fmp4Error(f"box {kind!r} of {size} bytes overruns its parent")
        out.append((kind, pos + head, pos + size))
        pos += size
    if len(out) > 10_000:
        raise Fmp4Error("too many boxes")
    return out


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for k, s, e in _boxes(data, start, end):
        if k == kind:
            return s, e
    return None


def _need(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int]:
    found = _child(data, start, end, kind)
    if found is None:
        raise Fmp4Error(f"missing {kind.decode('latin-1')} box")
    return found


def _es_descriptor_asc(esds: bytes) -> bytes:
    """The DecoderSpecificInfo (AudioSpecificConfig) inside an esds body (after version/flags)."""
    pos = 4
    end = len(esds)
    while pos < end:
        tag = esds[pos]
        pos += 1
        n = 0
        for _ in range(4):
            if pos >= end:
                raise Fmp4Error("truncated esds descriptor")
            b = esds[pos]
            pos += 1
            n = (n << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        if tag == 0x03:
            if pos + 3 > end:
                raise Fmp4Error("truncated ES_Descriptor")
            flags = esds[pos + 2]
            pos += 3
            if flags & 0x80:
                pos += 2
            if flags & 0x40:
                pos += 1 + (esds[pos] if pos < end else 0)
            if flags & 0x20:
                pos += 2
            continue
        if tag == 0x04:
            pos += 13
            continue
        if tag == 0x05:
            if pos + n > end:
                raise Fmp4Error("truncated AudioSpecificConfig")
            return esds[pos : pos + n]
        pos += n
    raise Fmp4Error("esds without AudioSpecificConfig")


def _u32_if(data: bytes, pos: int, present: int, default: int) -> tuple[int, int]:
    """An optional u32 field of tfhd/trun: (value or default, position after it)."""
    if present:
        return struct.unpack_from(">I", data, pos)[0], pos + 4
    return default, pos


@dataclass(slots=True)
class _Track:
    kind: FrameKind
    timescale: int
    codec: VideoCodec | None
    config_tag: bytes
    default_duration: int = 0
    default_size: int = 0
    default_flags: int = 0


class Fmp4Demuxer:
    """fMP4 HLS source -> Frames: `init(data)` with the EXT-X-MAP resource (returns the
    sequence-header frames), then `segment(data)` with each whole segment or part (moof+mdat
    pairs). Raises only Fmp4Error; work is linear in the input, samples per run bounded."""

    def __init__(self) -> None:
        self._tracks: dict[int, _Track] = {}
        self._origin: int | None = None  # ms
        self.frames = 0

    def init(self, data: bytes) -> list[Frame]:
        try:
            return self._init(data)
        except (IndexError, struct.error, BitstreamError) as exc:
            raise Fmp4Error(f"malformed init segment: {exc}") from exc

    def segment(self, data: bytes) -> list[Frame]:
        if not self._tracks:
            raise Fmp4Error("media segment before an init segment")
        try:
            out = self._segment(data)
        except (IndexError, struct.error, BitstreamError) as exc:
            raise Fmp4Error(f"malformed media segment: {exc}") from exc
        out.sort(key=lambda f: (f.timestamp, 0 if f.config else 1))
        self.frames += len(out)
        return out

    def _init(self, data: bytes) -> list[Frame]:
        tracks: dict[int, _Track] = {}
        moov = _need(data, 0, len(data), b"moov")
        for kind, s, e in _boxes(data, *moov):
            if kind != b"trak":
                continue
            tkhd = _need(data, s, e, b"tkhd")
            version = data[tkhd[0]]
            track_id = struct.unpack_from(">I", data, tkhd[0] + (20 if version == 1 else 12))[0]
            mdia = _need(data, s, e, b"mdia")
            mdhd = _need(data, *mdia, b"mdhd")
            mv = data[mdhd[0]]
            timescale = struct.unpack_from(">I", data, mdhd[0] + (20 if mv == 1 else 12))[0]
            if timescale == 0:
                raise Fmp4Error("track timescale 0")
            minf = _need(data, *mdia, b"minf")
            stbl = _need(data, *minf, b"stbl")
            stsd = _need(data, *stbl, b"stsd")
            entries = _boxes(data, stsd[0] + 8, stsd[1])
            if not entries:
                continue
            ekind, es, ee = entries[0]
            if ekind in (b"avc1", b"avc3", b"hvc1", b"hev1"):
                codec = VideoCodec.HEVC if ekind in (b"hvc1", b"hev1") else VideoCodec.AVC
                rec_kind = b"hvcC" if codec is VideoCodec.HEVC else b"avcC"
                rec = _need(data, es + 78, ee, rec_kind)
                record = bytes(data[rec[0] : rec[1]])
                parse_video_config(codec, record)  # validate now, not at the first frame
                tag = video_config_tag(codec, record)
                tracks[track_id] = _Track(FrameKind.VIDEO, timescale, codec, tag)
            elif ekind == b"mp4a":
                esds = _need(data, es + 28, ee, b"esds")
                asc = _es_descriptor_asc(bytes(data[esds[0] : esds[1]]))
                parse_asc(asc)
                tracks[track_id] = _Track(FrameKind.AUDIO, timescale, None, aac_config_tag(asc))
        mvex = _child(data, *moov, b"mvex")
        if mvex is not None:
            for kind, s, _ in _boxes(data, *mvex):
                if kind == b"trex":
                    tid, _, dur, size, flags = struct.unpack_from(">IIIII", data, s + 4)
                    if tid in tracks:
                        t = tracks[tid]
                        t.default_duration, t.default_size, t.default_flags = dur, size, flags
        if not tracks:
            raise Fmp4Error("init segment has no H.264/H.265/AAC track")
        self._tracks = tracks
        # Stamped at the start of the timeline; the hub keeps them apart from the media anyway.
        return [make_frame(t.kind, 0, t.config_tag) for t in tracks.values()]

    def _ms(self, decode_time: int, timescale: int) -> int:
        ms = decode_time * 1000 // timescale
        if self._origin is None:
            self._origin = ms
        return max(0, ms - self._origin)

    def _segment(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        top = _boxes(data, 0, len(data))
        for kind, s, e in top:
            if kind != b"moof":
                continue
            moof_start = s - 8
            for tk, ts_, te in _boxes(data, s, e):
                if tk == b"traf":
                    out.extend(self._traf(data, moof_start, ts_, te))
        return out

    def _traf(self, data: bytes, moof_start: int, s: int, e: int) -> list[Frame]:
        tfhd = _need(data, s, e, b"tfhd")
        flags = int.from_bytes(data[tfhd[0] + 1 : tfhd[0] + 4], "big")
        track_id = struct.unpack_from(">I", data, tfhd[0] + 4)[0]
        track = self._tracks.get(track_id)
        if track is None:
            return []
        pos = tfhd[0] + 8
        base = moof_start
        if flags & 0x01:
            base = struct.unpack_from(">Q", data, pos)[0]
            pos += 8
        if flags & 0x02:
            pos += 4
        default_duration, default_size, default_flags = (
            track.default_duration,
            track.default_size,
            track.default_flags,
        )
        default_duration, pos = _u32_if(data, pos, flags & 0x08, default_duration)
        default_size, pos = _u32_if(data, pos, flags & 0x10, default_size)
        default_flags, pos = _u32_if(data, pos, flags & 0x20, default_flags)
        tfdt = _child(data, s, e, b"tfdt")
        decode_time = 0
        if tfdt is not None:
            v = data[tfdt[0]]
            decode_time = struct.unpack_from(">Q" if v == 1 else ">I", data, tfdt[0] + 4)[0]
        out: list[Frame] = []
        data_end = base  # where the previous trun's data ended (for runs without data offset)
        for kind, rs, _ in _boxes(data, s, e):
            if kind != b"trun":
                continue
            version = data[rs]
            tflags = int.from_bytes(data[rs + 1 : rs + 4], "big")
            count = struct.unpack_from(">I", data, rs + 4)[0]
            if count > _MAX_SAMPLES:
                raise Fmp4Error(f"trun with {count} samples")
            p = rs + 8
            offset = data_end
            if tflags & 0x001:
                offset = base + struct.unpack_from(">i", data, p)[0]
                p += 4
            first_flags = None
            if tflags & 0x004:
                first_flags = struct.unpack_from(">I", data, p)[0]
                p += 4
            for i in range(count):
                dur, p = _u32_if(data, p, tflags & 0x100, default_duration)
                size, p = _u32_if(data, p, tflags & 0x200, default_size)
                first = first_flags if i == 0 and first_flags is not None else default_flags
                sflags, p = _u32_if(data, p, tflags & 0x400, first)
                cts = 0
                if tflags & 0x800:
                    cts = struct.unpack_from(">i" if version == 1 else ">I", data, p)[0]
                    p += 4
                if offset < 0 or offset + size > len(data):
                    raise Fmp4Error("sample data outside the segment")
                sample = bytes(data[offset : offset + size])
                offset += size
                ts = self._ms(decode_time, track.timescale)
                if track.kind == FrameKind.VIDEO and track.codec is not None:
                    sync = not sflags & _SAMPLE_NON_SYNC
                    cts_ms = cts * 1000 // track.timescale
                    payload = video_frame_tag(track.codec, sync, cts_ms, sample)
                    out.append(make_frame(FrameKind.VIDEO, ts, payload))
                elif size:
                    out.append(make_frame(FrameKind.AUDIO, ts, aac_frame_tag(sample)))
                decode_time += dur
            data_end = offset
        return out
