"""Elementary-stream views of FLV tag bodies, for the container muxers (MPEG-TS, fMP4).

Sans-IO helpers shared by media.mpegts and media.fmp4: unpack a video tag body
(legacy AVC id 7 / HEVC id 12, or Enhanced RTMP with the avc1/hvc1 FourCC) into
its packet type, composition offset and NAL data; parse the decoder
configuration records (avcC/hvcC) and the AAC AudioSpecificConfig; convert
between length-prefixed (AVCC) and Annex-B NAL framing; build FLV tag bodies
back from NAL units (the MPEG-TS demuxer's direction).

Every parser raises `BitstreamError` (a ValueError) on malformed input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, StrEnum

from .codecs import AUDIO_FORMAT_AAC, VIDEO_CODEC_AVC, VIDEO_CODEC_HEVC


class BitstreamError(ValueError):
    """A codec structure (config record, NAL framing, ADTS header) is malformed."""


class VideoCodec(StrEnum):
    AVC = "avc"
    HEVC = "hevc"


class VideoPacket(Enum):
    CONFIG = "config"
    FRAMES = "frames"
    END = "end"


@dataclass(frozen=True, slots=True)
class VideoTag:
    """A video tag body split into its parts. `data` is the avcC/hvcC record for
    CONFIG, length-prefixed NAL units for FRAMES."""

    codec: VideoCodec
    packet: VideoPacket
    keyframe: bool
    cts_ms: int
    data: bytes


_EX_HEADER_BIT = 0x80
_FOURCC = {b"avc1": VideoCodec.AVC, b"hvc1": VideoCodec.HEVC}
_LEGACY = {VIDEO_CODEC_AVC: VideoCodec.AVC, VIDEO_CODEC_HEVC: VideoCodec.HEVC}


def _si24(b: bytes) -> int:
    v = (b[0] << 16) | (b[1] << 8) | b[2]
    return v - (1 << 24) if v & 0x800000 else v


def parse_video_tag(payload: bytes) -> VideoTag | None:
    """Unpack a video tag body; None for codecs/packets the muxers do not carry."""
    if len(payload) < 2:
        return None
    b0 = payload[0]
    if b0 & _EX_HEADER_BIT:
        frame_type = (b0 >> 4) & 0x07
        packet_type = b0 & 0x0F
        if len(payload) < 5:
            return None
        codec = _FOURCC.get(bytes(payload[1:5]))
        if codec is None:
            return None
        key = frame_type == 1
        if packet_type == 0:
            return VideoTag(codec, VideoPacket.CONFIG, False, 0, bytes(payload[5:]))
        if packet_type == 1:
            # AVC in Enhanced RTMP keeps the composition time in CodedFrames too.
            if len(payload) < 8:
                return None
            return VideoTag(codec, VideoPacket.FRAMES, key, _si24(payload[5:8]), bytes(payload[8:]))
        if packet_type == 3:
            return VideoTag(codec, VideoPacket.FRAMES, key, 0, bytes(payload[5:]))
        if packet_type == 2:
            return VideoTag(codec, VideoPacket.END, False, 0, b"")
        return None
    legacy = _LEGACY.get(b0 & 0x0F)
    if legacy is None or len(payload) < 5:
        return None
    kind = payload[1]
    if kind == 0:
        return VideoTag(legacy, VideoPacket.CONFIG, False, 0, bytes(payload[5:]))
    if kind == 1:
        return VideoTag(legacy, VideoPacket.FRAMES, (b0 >> 4) == 1, _si24(payload[2:5]), bytes(payload[5:]))
    if kind == 2:
        return VideoTag(legacy, VideoPacket.END, False, 0, b"")
    return None


def aac_payload(payload: bytes) -> tuple[bool, bytes] | None:
    """(is_config, data) of an AAC audio tag body; None for other sound formats."""
    if len(payload) < 2 or (payload[0] >> 4) != AUDIO_FORMAT_AAC:
        return None
    return payload[1] == 0, bytes(payload[2:])


# ---------------------------------------------------------------- NAL framing


def split_length_prefixed(data: bytes, length_size: int = 4) -> list[bytes]:
    """AVCC framing (big-endian length before each NAL unit) -> NAL units."""
    out: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if pos + length_size > end:
            raise BitstreamError("truncated NAL length")
        n = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if n == 0 or pos + n > end:
            raise BitstreamError(f"NAL length {n} past the end of the sample")
        out.append(data[pos : pos + n])
        pos += n
    return out


def check_length_prefixed(data: bytes, length_size: int = 4) -> None:
    """Raise BitstreamError unless `data` is a whole number of length-prefixed NAL units
    (what split_length_prefixed checks, without copying the units)."""
    pos, end = 0, len(data)
    while pos < end:
        if pos + length_size > end:
            raise BitstreamError("truncated NAL length")
        n = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size + n
        if n == 0 or pos > end:
            raise BitstreamError(f"NAL length {n} past the end of the sample")


def split_annexb(data: bytes) -> list[bytes]:
    """Annex-B byte stream (00 00 01 / 00 00 00 01 start codes) -> NAL units. (A compiled
    pattern splits in about half the time of a bytes.find loop on real frames.)"""
    out: list[bytes] = []
    for nal in _START_CODE.split(data)[1:]:  # [0] is whatever precedes the first start code
        if nal and nal[-1] == 0:
            # A 4-byte start code leaves a trailing zero on the previous unit; trailing
            # zero bytes are never part of a NAL unit (rbsp_trailing_bits end in 1).
            nal = nal.rstrip(b"\x00")
        if nal:
            out.append(nal)
    return out


_START_CODE = re.compile(b"\x00\x00\x01")


def annexb(nalus: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nalus)


def nal_type(codec: VideoCodec, nal: bytes) -> int:
    if not nal:
        return -1
    return (nal[0] >> 1) & 0x3F if codec is VideoCodec.HEVC else nal[0] & 0x1F


# AVC NAL types
AVC_IDR = 5
AVC_SPS = 7
AVC_PPS = 8
AVC_AUD = 9
# HEVC NAL types
HEVC_IRAP_FIRST = 16
HEVC_IRAP_LAST = 23
HEVC_VPS = 32
HEVC_SPS = 33
HEVC_PPS = 34
HEVC_AUD = 35


def is_parameter_set(codec: VideoCodec, t: int) -> bool:
    if codec is VideoCodec.HEVC:
        return t in (HEVC_VPS, HEVC_SPS, HEVC_PPS)
    return t in (AVC_SPS, AVC_PPS)


def is_aud(codec: VideoCodec, t: int) -> bool:
    return t == (HEVC_AUD if codec is VideoCodec.HEVC else AVC_AUD)


def is_random_access(codec: VideoCodec, t: int) -> bool:
    if codec is VideoCodec.HEVC:
        return HEVC_IRAP_FIRST <= t <= HEVC_IRAP_LAST
    return t == AVC_IDR


# What a NAL unit's first byte says about it, one table per codec (the demuxer classifies
# every NAL unit of every frame: a table lookup instead of three calls).
NAL_OTHER = 0
NAL_AUD = 1
NAL_PARAMETER_SET = 2
NAL_RANDOM_ACCESS = 3


def _nal_classes(codec: VideoCodec) -> bytes:
    out = bytearray(256)
    for first in range(256):
        t = nal_type(codec, bytes([first]))
        if is_aud(codec, t):
            out[first] = NAL_AUD
        elif is_parameter_set(codec, t):
            out[first] = NAL_PARAMETER_SET
        elif is_random_access(codec, t):
            out[first] = NAL_RANDOM_ACCESS
    return bytes(out)


NAL_CLASSES = {codec: _nal_classes(codec) for codec in VideoCodec}


# ---------------------------------------------------------------- bit reader


class _Bits:
    """Exp-Golomb bit reader over an RBSP (emulation prevention bytes removed)."""

    __slots__ = ("_data", "_pos")

    def __init__(self, nal_payload: bytes) -> None:
        self._data = nal_payload.replace(b"\x00\x00\x03", b"\x00\x00")
        self._pos = 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self._pos >> 3
            if byte >= len(self._data):
                raise BitstreamError("parameter set truncated")
            v = (v << 1) | ((self._data[byte] >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError("exp-golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _skip_scaling_list(r: _Bits, size: int) -> None:
    last, nxt = 8, 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se()) % 256
        last = nxt if nxt != 0 else last


def avc_sps_dimensions(sps: bytes) -> tuple[int, int]:
    """(width, height) in pixels from an H.264 SPS NAL unit (header byte included)."""
    r = _Bits(sps[1:])
    profile = r.u(8)
    r.u(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format = r.ue()
        if chroma_format == 3:
            r.u(1)
        r.ue()
        r.ue()
        r.u(1)
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(min(r.ue(), 255)):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)
    w_mbs = r.ue() + 1
    h_map = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)
    r.u(1)
    crop = (0, 0, 0, 0)
    if r.u(1):
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    sub_w = 2 if chroma_format in (1, 2) else 1
    sub_h = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
    width = w_mbs * 16 - sub_w * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * h_map * 16 - sub_h * (crop[2] + crop[3])
    return max(width, 0), max(height, 0)


@dataclass(frozen=True, slots=True)
class HevcSpsInfo:
    width: int
    height: int
    chroma_format: int
    bit_depth_luma: int
    bit_depth_chroma: int
    ptl: bytes  # the 12 general profile_tier_level bytes (profile .. level)
    sub_layers: int


def hevc_sps_info(sps: bytes) -> HevcSpsInfo:
    """Fields of an H.265 SPS NAL unit (2-byte header included) that hvcC and tkhd need."""
    if len(sps) < 15:
        raise BitstreamError("HEVC SPS too short")
    r = _Bits(sps[2:])
    r.u(4)
    max_sub_layers_minus1 = r.u(3)
    r.u(1)
    ptl = bytes(_Bits(sps[2:])._data[1:13])
    r.u(96)  # general profile_tier_level: 88 bits + level 8
    sub_profile = []
    sub_level = []
    for _ in range(max_sub_layers_minus1):
        sub_profile.append(r.u(1))
        sub_level.append(r.u(1))
    if max_sub_layers_minus1 > 0:
        r.u(2 * (8 - max_sub_layers_minus1))
    for i in range(max_sub_layers_minus1):
        if sub_profile[i]:
            r.u(88)
        if sub_level[i]:
            r.u(8)
    r.ue()  # sps_seq_parameter_set_id
    chroma = r.ue()
    if chroma == 3:
        r.u(1)
    width = r.ue()
    height = r.ue()
    if r.u(1):  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w = 2 if chroma in (1, 2) else 1
        sub_h = 2 if chroma == 1 else 1
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    depth_l = r.ue() + 8
    depth_c = r.ue() + 8
    return HevcSpsInfo(
        max(width, 0), max(height, 0), chroma, depth_l, depth_c, ptl, max_sub_layers_minus1 + 1
    )


# ---------------------------------------------------------------- decoder configs


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """A parsed avcC/hvcC record: what TS needs in-band and fMP4 needs in moov."""

    codec: VideoCodec
    record: bytes  # the avcC / hvcC body as carried in the FLV sequence header
    length_size: int
    parameter_sets: tuple[bytes, ...]  # VPS/SPS/PPS in decoding order
    width: int
    height: int
    codec_string: str  # RFC 6381 (avc1.64001f, hvc1.1.6.L93.B0)


def _nal_list(record: bytes, pos: int, count: int, what: str) -> tuple[list[bytes], int]:
    """`count` NAL units, each with a 16-bit length, from a config record; (units, next pos)."""
    out: list[bytes] = []
    for _ in range(count):
        n = int.from_bytes(record[pos : pos + 2], "big")
        nal = record[pos + 2 : pos + 2 + n]
        if len(nal) != n or n == 0:
            raise BitstreamError(f"{what} truncated")
        out.append(nal)
        pos += 2 + n
    return out, pos


def parse_avcc(record: bytes) -> VideoConfig:
    if len(record) < 7 or record[0] != 1:
        raise BitstreamError("not an AVCDecoderConfigurationRecord")
    length_size = (record[4] & 3) + 1
    sps_list, pos = _nal_list(record, 6, record[5] & 0x1F, "avcC SPS")
    if pos >= len(record):
        raise BitstreamError("avcC has no PPS count")
    pps_list, pos = _nal_list(record, pos + 1, record[pos], "avcC PPS")
    sets = sps_list + pps_list
    if not sps_list:
        raise BitstreamError("avcC without SPS")
    width, height = avc_sps_dimensions(sps_list[0])
    codec_string = f"avc1.{record[1]:02x}{record[2]:02x}{record[3]:02x}"
    return VideoConfig(VideoCodec.AVC, bytes(record), length_size, tuple(sets), width, height, codec_string)


def parse_hvcc(record: bytes) -> VideoConfig:
    if len(record) < 23 or record[0] != 1:
        raise BitstreamError("not an HEVCDecoderConfigurationRecord")
    length_size = (record[21] & 3) + 1
    n_arrays = record[22]
    pos = 23
    sets: list[bytes] = []
    sps: bytes | None = None
    for _ in range(n_arrays):
        if pos + 3 > len(record):
            raise BitstreamError("hvcC array truncated")
        t = record[pos] & 0x3F
        count = int.from_bytes(record[pos + 1 : pos + 3], "big")
        nals, pos = _nal_list(record, pos + 3, count, "hvcC NAL unit")
        if t in (HEVC_VPS, HEVC_SPS, HEVC_PPS):
            sets.extend(nals)
        if t == HEVC_SPS and sps is None and nals:
            sps = nals[0]
    order = {HEVC_VPS: 0, HEVC_SPS: 1, HEVC_PPS: 2}
    sets.sort(key=lambda nal: order[(nal[0] >> 1) & 0x3F])
    width = height = 0
    if sps is not None:
        info = hevc_sps_info(sps)
        width, height = info.width, info.height
    return VideoConfig(
        VideoCodec.HEVC, bytes(record), length_size, tuple(sets), width, height, hevc_codec_string(record)
    )


def hevc_codec_string(record: bytes) -> str:
    """RFC 6381 / ISO 14496-15 annex E codec string from an hvcC record."""
    space = ("", "A", "B", "C")[record[1] >> 6]
    tier = "H" if record[1] & 0x20 else "L"
    profile = record[1] & 0x1F
    compat = int.from_bytes(record[2:6], "big")
    rev = int(f"{compat:032b}"[::-1], 2)
    constraints = bytearray(record[6:12])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    tail = "".join(f".{b:X}" for b in constraints)
    return f"hvc1.{space}{profile}.{rev:X}.{tier}{record[12]}{tail}"


def parse_video_config(codec: VideoCodec, record: bytes) -> VideoConfig:
    return parse_hvcc(record) if codec is VideoCodec.HEVC else parse_avcc(record)


def build_avcc(sps: list[bytes], pps: list[bytes]) -> bytes:
    if not sps or len(sps[0]) < 4:
        raise BitstreamError("cannot build avcC without a valid SPS")
    s = sps[0]
    out = bytearray([1, s[1], s[2], s[3], 0xFF, 0xE0 | len(sps)])
    for n in sps:
        out += len(n).to_bytes(2, "big") + n
    out.append(len(pps))
    for n in pps:
        out += len(n).to_bytes(2, "big") + n
    return bytes(out)


def build_hvcc(vps: list[bytes], sps: list[bytes], pps: list[bytes]) -> bytes:
    if not sps:
        raise BitstreamError("cannot build hvcC without an SPS")
    info = hevc_sps_info(sps[0])
    out = bytearray([1])
    out += info.ptl
    out += bytes(
        [
            0xF0,
            0x00,  # min_spatial_segmentation_idc
            0xFC,  # parallelismType unknown
            0xFC | (info.chroma_format & 3),
            0xF8 | ((info.bit_depth_luma - 8) & 7),
            0xF8 | ((info.bit_depth_chroma - 8) & 7),
            0x00,
            0x00,  # avgFrameRate
            ((info.sub_layers & 7) << 3) | 0x03,  # numTemporalLayers, lengthSizeMinusOne=3
        ]
    )
    arrays = [(HEVC_VPS, vps), (HEVC_SPS, sps), (HEVC_PPS, pps)]
    present = [(t, nals) for t, nals in arrays if nals]
    out.append(len(present))
    for t, nals in present:
        out.append(0x80 | t)
        out += len(nals).to_bytes(2, "big")
        for n in nals:
            out += len(n).to_bytes(2, "big") + n
    return bytes(out)


def video_config_tag(codec: VideoCodec, record: bytes) -> bytes:
    """FLV video tag body carrying a decoder configuration record."""
    if codec is VideoCodec.HEVC:
        return bytes([0x80 | (1 << 4) | 0]) + b"hvc1" + record
    return bytes([0x17, 0, 0, 0, 0]) + record


def video_frame_tag(codec: VideoCodec, keyframe: bool, cts_ms: int, data: bytes) -> bytes:
    """FLV video tag body carrying length-prefixed NAL units (HEVC as Enhanced RTMP hvc1)."""
    return video_frame_header(codec, keyframe, cts_ms) + data


def video_frame_header(codec: VideoCodec, keyframe: bool, cts_ms: int) -> bytes:
    """The bytes of a video_frame_tag before its NAL units."""
    cts = (cts_ms & 0xFFFFFF).to_bytes(3, "big")
    ft = 1 if keyframe else 2
    if codec is VideoCodec.HEVC:
        return bytes([0x80 | (ft << 4) | 1]) + b"hvc1" + cts
    return bytes([(ft << 4) | VIDEO_CODEC_AVC, 1]) + cts


# ---------------------------------------------------------------- AAC

AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
AAC_FRAME_SAMPLES = 1024


@dataclass(frozen=True, slots=True)
class AacConfig:
    object_type: int
    sample_rate_index: int
    sample_rate: int
    channels: int
    record: bytes  # the AudioSpecificConfig bytes

    @property
    def codec_string(self) -> str:
        return f"mp4a.40.{self.object_type}"


def parse_asc(asc: bytes) -> AacConfig:
    if len(asc) < 2:
        raise BitstreamError("AudioSpecificConfig too short")
    v = int.from_bytes(asc[:2], "big")
    object_type = v >> 11
    sr_index = (v >> 7) & 0x0F
    channels = (v >> 3) & 0x0F
    if object_type == 0 or object_type == 31:
        raise BitstreamError(f"unsupported AAC object type {object_type}")
    if sr_index >= len(AAC_SAMPLE_RATES):
        # 15 means an explicit 24-bit rate; not something ADTS can carry.
        raise BitstreamError(f"unsupported AAC sampling index {sr_index}")
    return AacConfig(object_type, sr_index, AAC_SAMPLE_RATES[sr_index], channels, bytes(asc))


def build_asc(object_type: int, sr_index: int, channels: int) -> bytes:
    return ((object_type << 11) | (sr_index << 7) | (channels << 3)).to_bytes(2, "big")


def adts_header(cfg: AacConfig, raw_len: int) -> bytes:
    """7-byte ADTS header (no CRC) for one raw AAC frame."""
    n = raw_len + 7
    if n >= 1 << 13:
        raise BitstreamError("AAC frame too large for ADTS")
    # ADTS carries object types 1..4 only; HE-AAC (5, 29: SBR/PS signalled explicitly) is
    # an LC core at the first sampling index, with SBR found implicitly by the decoder.
    profile = cfg.object_type - 1 if cfg.object_type <= 4 else 1
    return bytes(
        [
            0xFF,
            0xF1,
            (profile << 6) | (cfg.sample_rate_index << 2) | (cfg.channels >> 2),
            ((cfg.channels & 3) << 6) | (n >> 11),
            (n >> 3) & 0xFF,
            ((n & 7) << 5) | 0x1F,
            0xFC,
        ]
    )


def aac_config_tag(asc: bytes) -> bytes:
    return b"\xaf\x00" + asc


def aac_frame_tag(raw: bytes) -> bytes:
    return b"\xaf\x01" + raw
