"""Codec facts read from FLV tag bodies: keyframe and sequence-header detection.

Covers legacy FLV (AVC codec id 7, the widespread HEVC id 12, AAC sound format 10)
and Enhanced RTMP (ExVideoTagHeader with a FourCC such as hvc1/av01/vp09).
Anything else is passed through opaquely: never a keyframe, never config.
"""

from __future__ import annotations

from .frame import Frame, FrameKind

VIDEO_CODEC_AVC = 7
VIDEO_CODEC_HEVC = 12  # not in the FLV spec, but what ffmpeg<6 forks, SRS and nginx-rtmp forks use
AUDIO_FORMAT_AAC = 10

# Enhanced RTMP PacketType values (low nibble when the IsExHeader bit is set).
EX_SEQUENCE_START = 0
EX_CODED_FRAMES = 1
EX_SEQUENCE_END = 2
EX_CODED_FRAMES_X = 3
EX_METADATA = 4
EX_MPEG2TS_SEQUENCE_START = 5

_EX_HEADER_BIT = 0x80
_FRAME_TYPE_KEY = 1


def classify_video(payload: bytes) -> tuple[bool, bool]:
    """Return (keyframe, config) for a video tag body."""
    if not payload:
        return False, False
    b0 = payload[0]
    if b0 & _EX_HEADER_BIT:
        frame_type = (b0 >> 4) & 0x07
        packet_type = b0 & 0x0F
        config = packet_type in (EX_SEQUENCE_START, EX_MPEG2TS_SEQUENCE_START)
        keyframe = frame_type == _FRAME_TYPE_KEY and packet_type in (EX_CODED_FRAMES, EX_CODED_FRAMES_X)
        return keyframe, config
    frame_type = b0 >> 4
    codec = b0 & 0x0F
    if codec in (VIDEO_CODEC_AVC, VIDEO_CODEC_HEVC):
        if len(payload) < 2:
            return False, False
        if payload[1] == 0:
            return False, True
        if payload[1] == 2:  # end of sequence
            return False, False
    return frame_type == _FRAME_TYPE_KEY, False


def classify_audio(payload: bytes) -> bool:
    """Return True when the audio tag body is a sequence header (AAC AudioSpecificConfig)."""
    return len(payload) >= 2 and (payload[0] >> 4) == AUDIO_FORMAT_AAC and payload[1] == 0


def make_frame(kind: int, timestamp: int, payload: bytes) -> Frame:
    """Build a Frame with keyframe/config flags computed from the payload."""
    if kind == FrameKind.VIDEO:
        keyframe, config = classify_video(payload)
        return Frame(FrameKind.VIDEO, timestamp, payload, keyframe=keyframe, config=config)
    if kind == FrameKind.AUDIO:
        return Frame(FrameKind.AUDIO, timestamp, payload, config=classify_audio(payload))
    return Frame(kind, timestamp, payload)


def video_codec_name(payload: bytes) -> str:
    """A short name for logs and status ("avc", "hevc", "hvc1", ...)."""
    if not payload:
        return "none"
    b0 = payload[0]
    if b0 & _EX_HEADER_BIT:
        return payload[1:5].decode("latin-1") if len(payload) >= 5 else "ex?"
    return {VIDEO_CODEC_AVC: "avc", VIDEO_CODEC_HEVC: "hevc"}.get(b0 & 0x0F, f"codec{b0 & 0x0F}")
