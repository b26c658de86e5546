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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .elementary import (
    AAC_FRAME_SAMPLES,
    AacConfig,
    VideoCodec,
    VideoConfig,
    VideoPacket,
    aac_payload,
    parse_asc,
    parse_video_config,
    parse_video_tag,
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
