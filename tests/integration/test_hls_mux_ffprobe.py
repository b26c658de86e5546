"""Real peers for the sans-IO HLS core: ffprobe/ffmpeg decode what media.mpegts, media.fmp4 and
media.hls write from a real H.264/AAC FLV (and H.265 from ffmpeg's own TS), and the TS demuxer
reads what ffmpeg's HLS muxer writes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import m3u8
import pytest

from liverelay.media.elementary import VideoCodec
from liverelay.media.flv import FlvDecoder
from liverelay.media.fmp4 import Fmp4Demuxer
from liverelay.media.frame import Frame, FrameKind
from liverelay.media.hls.playlist import ResourceNames, render_playlist
from liverelay.media.hls.segmenter import Container, HlsSegmenter, SegmenterConfig
from liverelay.media.mpegts import TsDemuxer, TsMuxer

WALL0 = 1_700_000_000.0


def count_frames(ffprobe: str, path: Path) -> dict[str, int]:
    """Decoded frames per codec type; fails on any ffprobe error output."""
    args = ["-v", "error", "-count_frames", "-show_entries", "stream=codec_type,nb_read_frames"]
    proc = subprocess.run(
        [ffprobe, *args, "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "", f"{path.name}: {proc.stderr}"
    out: dict[str, int] = {}
    for s in json.loads(proc.stdout)["streams"]:
        out[s["codec_type"]] = out.get(s["codec_type"], 0) + int(s.get("nb_read_frames", 0))
    return out


def play(ffmpeg: str, playlist: Path) -> None:
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-v", "error", "-i", str(playlist), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def flv_frames(path: Path) -> list[Frame]:
    return [e for e in FlvDecoder().feed(path.read_bytes()) if isinstance(e, Frame)]


def media_counts(frames: list[Frame], *, from_keyframe: bool = False) -> dict[str, int]:
    """Media frames (the FLV end-of-sequence tag is not one). With from_keyframe, only those
    from the first video keyframe on: what a segmenter can place in a segment."""
    start = next(f.timestamp for f in frames if f.keyframe) if from_keyframe else -1
    video = sum(1 for f in frames if f.kind == FrameKind.VIDEO and not f.config and len(f.payload) > 5)
    audio = sum(1 for f in frames if f.kind == FrameKind.AUDIO and not f.config and f.timestamp >= start)
    return {"video": video, "audio": audio}


def segment_to_dir(
    frames: list[Frame], cfg: SegmenterConfig, out: Path, *, audio: bool = True
) -> HlsSegmenter:
    seg = HlsSegmenter(cfg, video=True, audio=audio)
    for f in frames:
        seg.push(f, WALL0 + f.timestamp / 1000)
    seg.finish()
    out.mkdir(parents=True, exist_ok=True)
    names = ResourceNames()
    for s in seg.segments:
        (out / names.segment(s.msn, cfg.container)).write_bytes(s.data)
        for p in s.parts:
            (out / names.part(s.msn, p.index)).write_bytes(p.data)
    for init_id in {s.init_id for s in seg.segments}:
        data = seg.init_data(init_id)
        if data is not None:
            (out / names.init(init_id)).write_bytes(data)
    (out / "index.m3u8").write_text(render_playlist(seg))
    return seg


def window(n: int) -> dict[str, int]:
    return {"window_segments": n, "retain_segments": 0, "part_segments": n}


def test_ts_segments_decode_and_the_playlist_plays(
    sample_flv: Path, ffprobe: str, ffmpeg: str, tmp_path: Path
) -> None:
    frames = flv_frames(sample_flv)
    expected = media_counts(frames, from_keyframe=True)
    cfg = SegmenterConfig(Container.TS, target_duration_ms=2000, **window(50))
    seg = segment_to_dir(frames, cfg, tmp_path)
    assert len(seg.segments) == 5
    total = {"video": 0, "audio": 0}
    for s in seg.segments:
        counts = count_frames(ffprobe, tmp_path / f"seg{s.msn}.ts")
        assert counts["video"] > 0 and counts["audio"] > 0
        for k in total:
            total[k] += counts[k]
    assert total == expected
    assert count_frames(ffprobe, tmp_path / "index.m3u8") == expected
    play(ffmpeg, tmp_path / "index.m3u8")
    assert m3u8.loads((tmp_path / "index.m3u8").read_text()).is_endlist


def test_fmp4_init_fragments_and_ll_playlist_decode(
    sample_flv: Path, ffprobe: str, ffmpeg: str, tmp_path: Path
) -> None:
    frames = flv_frames(sample_flv)
    expected = media_counts(frames, from_keyframe=True)
    cfg = SegmenterConfig(Container.FMP4, target_duration_ms=2000, part_target_ms=500, **window(50))
    seg = segment_to_dir(frames, cfg, tmp_path)
    init = (tmp_path / f"init{seg.segments[0].init_id}.mp4").read_bytes()
    total = {"video": 0, "audio": 0}
    for s in seg.segments:
        whole = tmp_path / f"whole{s.msn}.mp4"
        whole.write_bytes(init + s.data)
        counts = count_frames(ffprobe, whole)
        for k in total:
            total[k] += counts[k]
        # The independent first part decodes on its own after the init segment.
        first = tmp_path / f"first{s.msn}.mp4"
        first.write_bytes(init + s.parts[0].data)
        assert count_frames(ffprobe, first)["video"] > 0
    assert total == expected
    everything = tmp_path / "all.mp4"
    everything.write_bytes(init + b"".join(s.data for s in seg.segments))
    assert count_frames(ffprobe, everything) == expected
    play(ffmpeg, tmp_path / "index.m3u8")


def test_hevc_from_ffmpeg_ts_through_demuxer_into_fmp4_and_ts(
    ffmpeg: str, ffprobe: str, tmp_path: Path
) -> None:
    src = tmp_path / "hevc.ts"
    source = ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"]
    source += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "6"]
    encode = ["-c:v", "libx265", "-preset", "ultrafast", "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p"]
    encode += ["-x265-params", "log-level=error", "-c:a", "aac", "-f", "mpegts"]
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *source, *encode, str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0 and "Unknown encoder" in proc.stderr:
        pytest.skip("this ffmpeg has no libx265")
    assert proc.returncode == 0, proc.stderr
    demux = TsDemuxer()
    data = src.read_bytes()
    frames: list[Frame] = []
    for i in range(0, len(data), 7 * 188 + 5):
        frames += demux.feed(data[i : i + 7 * 188 + 5])
    frames += demux.flush()
    expected = count_frames(ffprobe, src)
    assert media_counts(frames) == expected
    for container in (Container.FMP4, Container.TS):
        out = tmp_path / container.value
        cfg = SegmenterConfig(container, target_duration_ms=1000, part_target_ms=400, **window(50))
        seg = segment_to_dir(frames, cfg, out)
        assert len(seg.segments) >= 5
        assert count_frames(ffprobe, out / "index.m3u8") == expected
        play(ffmpeg, out / "index.m3u8")


def ffmpeg_hls(ffmpeg: str, source: Path, out: Path, *extra: str) -> tuple[Path, m3u8.M3U8]:
    """ffmpeg copies `source` into an HLS playlist + segments in `out` (a live source stand-in)."""
    out.mkdir()
    hls = ["-f", "hls", *extra, "-hls_time", "2", "-hls_list_size", "0", str(out / "index.m3u8")]
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), "-c", "copy", *hls],
        check=True,
        timeout=120,
    )
    return out, m3u8.load(str(out / "index.m3u8"))


def assert_remux_decodes(ffprobe: str, frames: list[Frame], path: Path) -> None:
    """Demuxed frames back out through our own TS muxer: ffprobe decodes all of them."""
    mux = TsMuxer(video=VideoCodec.AVC, audio=True)
    path.write_bytes(mux.start_segment() + b"".join(mux.mux(f) for f in frames))
    assert count_frames(ffprobe, path) == media_counts(frames)


def test_demuxer_reads_ffmpeg_hls_segments(
    sample_flv: Path, ffmpeg: str, ffprobe: str, tmp_path: Path
) -> None:
    """The native puller's direction: ffmpeg writes HLS; our demuxer gets every frame back."""
    out, playlist = ffmpeg_hls(ffmpeg, sample_flv, tmp_path / "src")
    demux = TsDemuxer()
    frames: list[Frame] = []
    for s in playlist.segments:
        frames += demux.feed((out / s.uri).read_bytes())
        frames += demux.flush()
    assert media_counts(frames) == media_counts(flv_frames(sample_flv))
    video_ts = [f.timestamp for f in frames if f.kind == FrameKind.VIDEO and not f.config]
    assert video_ts == sorted(video_ts)
    assert_remux_decodes(ffprobe, frames, tmp_path / "again.ts")


def test_fmp4_demuxer_reads_ffmpeg_fmp4_hls(
    sample_flv: Path, ffmpeg: str, ffprobe: str, tmp_path: Path
) -> None:
    """An fMP4 HLS source written by ffmpeg: every frame back, and our TS muxer re-encodes them."""
    out, playlist = ffmpeg_hls(ffmpeg, sample_flv, tmp_path / "src", "-hls_segment_type", "fmp4")
    demux = Fmp4Demuxer()
    frames = demux.init((out / playlist.segment_map[0].uri).read_bytes())
    for s in playlist.segments:
        frames += demux.segment((out / s.uri).read_bytes())
    assert media_counts(frames) == media_counts(flv_frames(sample_flv))
    assert_remux_decodes(ffprobe, frames, tmp_path / "again.ts")
