"""The native HLS puller's sans-IO parts: playlist parsing and tracking (sources/hls_playlist.py),
the playout timeline and AES-128 decryption (sources/hls.py). Byte fixtures only."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liverelay.media.frame import Frame, FrameKind
from liverelay.sources.hls import DISCONTINUITY_STEP_MS, PACE_RESET_S, Decryptor, Playout
from liverelay.sources.hls_playlist import (
    LIVE_START_SEGMENTS,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistError,
    PlaylistParser,
    PlaylistTracker,
    parse_playlist,
)

BASE = "http://o.example/live/s.m3u8"


def media(first: int, count: int, *, target: int = 2, endlist: bool = False, extra: str = "") -> str:
    lines = ["#EXTM3U", f"#EXT-X-TARGETDURATION:{target}", f"#EXT-X-MEDIA-SEQUENCE:{first}", extra]
    for msn in range(first, first + count):
        lines += [f"#EXTINF:{target}.0,", f"seg{msn}.ts"]
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def parsed(text: str) -> MediaPlaylist:
    playlist = parse_playlist(text, BASE)
    assert isinstance(playlist, MediaPlaylist)
    return playlist


def test_media_playlist_segments_are_absolute_and_numbered() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n"
        '#EXT-X-KEY:METHOD=AES-128,URI="/keys/k1",IV=0x000102030405060708090a0b0c0d0e0f\n'
        "#EXTINF:2.0,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.5,\nhttps://cdn.example/b.ts\n"
    )
    playlist = parsed(text)
    assert playlist.target_duration == 2 and playlist.last_msn == 8 and not playlist.endlist
    a, b = playlist.segments
    assert (a.msn, a.uri, a.duration, a.discontinuity) == (7, "http://o.example/live/a.ts", 2.0, False)
    assert (b.msn, b.uri, b.discontinuity) == (8, "https://cdn.example/b.ts", True)
    assert a.key is not None and a.key.uri == "http://o.example/keys/k1"
    assert a.key.iv == bytes(range(16))


def test_fmp4_segments_carry_their_init_section() -> None:
    text = '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2,\na.m4s\n'
    (segment,) = parsed(text).segments
    assert segment.init_uri == "http://o.example/live/init.mp4"
    assert parsed(media(0, 1)).segments[0].init_uri is None


def test_a_byte_order_mark_is_accepted() -> None:
    assert parsed("\ufeff" + media(0, 1)).segments[0].uri == "http://o.example/live/seg0.ts"


def test_master_picks_the_highest_bandwidth() -> None:
    text = (
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720\nhigh/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1200000\nmid/index.m3u8\n"
    )
    master = parse_playlist(text, BASE)
    assert isinstance(master, MasterPlaylist)
    assert master.best().uri == "http://o.example/live/high/index.m3u8"


def test_unusable_playlists_raise_playlist_error_only() -> None:
    for text in (
        "",
        "not a playlist",
        "#EXTM3U\n#EXTINF:abc,\na.ts\n",
        "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:zz\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:0\n#EXTINF:1,\na.ts\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1,\nfile:///etc/passwd\n",
        '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI="k"\n#EXTINF:1,\na.ts\n',
        '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0xZZ\n#EXTINF:1,\na.ts\n',
        '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4",BYTERANGE="100@0"\n#EXTINF:1,\na.m4s\n',
        '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="file:///init.mp4"\n#EXTINF:1,\na.m4s\n',
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\ndata:text/plain,x\n",
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1,\n#EXT-X-BYTERANGE:1000@0\na.ts\n",
    ):
        try:
            parse_playlist(text, BASE)
        except PlaylistError:
            continue
        raise AssertionError(f"accepted: {text!r}")


def test_a_master_without_variants_has_no_best() -> None:
    try:
        MasterPlaylist(()).best()
    except PlaylistError:
        return
    raise AssertionError("an empty master gave a variant")


def test_live_start_reload_timing_and_growth() -> None:
    tracker = PlaylistTracker()
    fresh = tracker.update(parsed(media(10, 5)), loaded_at=100.0)
    assert [s.msn for s in fresh] == list(range(15 - LIVE_START_SEGMENTS, 15))
    assert tracker.reload_at() == 102.0  # changed: one target duration after the load began
    assert tracker.update(parsed(media(10, 5)), loaded_at=102.0) == []
    assert tracker.reload_at() == 103.0  # unchanged: half of it (RFC 8216 §6.3.4)
    assert tracker.stalled_for(105.0) == 5.0
    fresh = tracker.update(parsed(media(11, 5)), loaded_at=103.0)
    assert [s.msn for s in fresh] == [15] and tracker.stalled_for(103.5) == 0.5
    assert tracker.gaps == 0


def test_a_vod_playlist_plays_from_its_start() -> None:
    tracker = PlaylistTracker()
    assert [s.msn for s in tracker.update(parsed(media(0, 4, endlist=True)), 0.0)] == [0, 1, 2, 3]
    assert tracker.endlist


def test_a_media_sequence_gap_skips_ahead_counts_and_marks_a_discontinuity() -> None:
    tracker = PlaylistTracker()
    tracker.update(parsed(media(0, 3)), 0.0)  # next is 3
    fresh = tracker.update(parsed(media(8, 3)), 2.0)  # 3..7 are gone
    assert [s.msn for s in fresh] == [8, 9, 10]
    assert tracker.gaps == 5
    assert fresh[0].discontinuity and not fresh[1].discontinuity


def test_a_media_sequence_going_back_restarts_at_the_live_edge() -> None:
    tracker = PlaylistTracker()
    tracker.update(parsed(media(100, 4)), 0.0)
    fresh = tracker.update(parsed(media(0, 4)), 2.0)
    assert [s.msn for s in fresh] == [2, 3] and fresh[0].discontinuity
    assert tracker.restarts == 1


def test_discontinuity_tags_pass_through() -> None:
    tracker = PlaylistTracker(live_start=3)
    text = media(0, 2) + "#EXT-X-DISCONTINUITY\n#EXTINF:2.0,\nseg2.ts\n"
    fresh = tracker.update(parsed(text), 0.0)
    assert [(s.msn, s.discontinuity) for s in fresh] == [(0, False), (1, False), (2, True)]


def frame(ts: int) -> Frame:
    return Frame(FrameKind.VIDEO, ts, b"\x17\x01\x00\x00\x00")


def test_playout_continues_the_timeline_across_a_discontinuity() -> None:
    playout = Playout()
    placed = []
    for ts in (0, 40, 80):
        f = frame(ts)
        playout.place(f)
        placed.append(f.timestamp)
    playout.discontinuity()
    for ts in (5_000_000, 5_000_040):  # the new timeline starts anywhere
        f = frame(ts)
        playout.place(f)
        placed.append(f.timestamp)
    assert placed == [0, 40, 80, 80 + DISCONTINUITY_STEP_MS, 120 + DISCONTINUITY_STEP_MS]


def test_playout_paces_to_the_wall_clock_and_re_anchors_far_off_frames() -> None:
    playout = Playout()
    assert playout.delay(1000, now=50.0) == 0.0  # the first frame anchors the clock
    assert abs(playout.delay(1500, now=50.1) - 0.4) < 1e-9
    far = 1500 + int(PACE_RESET_S * 1000) + 1000
    assert playout.delay(far, now=50.2) == 0.0  # re-anchored at (50.2, far)
    assert abs(playout.delay(far + 1000, now=50.2) - 1.0) < 1e-9


def aes_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decryptor_round_trips_in_any_split(data: bytes, cuts: list[int]) -> None:
    key, iv = bytes(range(16)), bytes(range(16, 32))
    cipher = aes_encrypt(key, iv, data)
    d = Decryptor(key, iv)
    out = b""
    last = 0
    for cut in sorted(c % (len(cipher) + 1) for c in cuts):
        out += d.update(cipher[last:cut])
        last = cut
    out += d.update(cipher[last:]) + d.finish()
    assert out == data


# ---- fuzz: the playlist parser path raises PlaylistError and nothing else -----------------

REAL_PLAYLISTS = [
    media(3, 4),
    media(0, 3, endlist=True),
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:42\n"
    "#EXTINF:1.000000,\nindex42.ts\n#EXTINF:1.000000,\nindex43.ts\n",  # ffmpeg's hls muxer
    '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="avc1.64001f,mp4a.40.2"\nlow.m3u8\n'
    "#EXT-X-STREAM-INF:BANDWIDTH=1800000\nhigh.m3u8\n",
]
TAGS = [
    "#EXTM3U",
    "#EXT-X-TARGETDURATION:",
    "#EXT-X-MEDIA-SEQUENCE:",
    "#EXTINF:",
    "#EXT-X-DISCONTINUITY",
    "#EXT-X-ENDLIST",
    "#EXT-X-KEY:METHOD=AES-128,URI=",
    "#EXT-X-STREAM-INF:BANDWIDTH=",
    "#EXT-X-MAP:URI=",
    "#EXT-X-BYTERANGE:",
    "#EXT-X-PROGRAM-DATE-TIME:",
    "#EXT-X-PART:DURATION=",
]


def check_parse(text: str) -> None:
    try:
        playlist = parse_playlist(text, BASE)
    except PlaylistError:
        return
    if isinstance(playlist, MediaPlaylist):
        PlaylistTracker().update(playlist, 0.0)
        for segment in playlist.segments:
            assert segment.uri.startswith(("http://", "https://"))


@given(st.text(max_size=600))
@settings(max_examples=200, deadline=None)
def test_fuzz_arbitrary_text(text: str) -> None:
    check_parse("#EXTM3U\n" + text)


@given(
    st.lists(
        st.tuples(st.sampled_from(TAGS), st.text(max_size=30), st.text(max_size=20)),
        max_size=20,
    )
)
@settings(max_examples=300, deadline=None)
def test_fuzz_tag_soup(lines: list[tuple[str, str, str]]) -> None:
    check_parse("#EXTM3U\n" + "\n".join(f"{tag}{value}\n{uri}" for tag, value, uri in lines))


@given(st.sampled_from(REAL_PLAYLISTS), st.data())
@settings(max_examples=300, deadline=None)
def test_fuzz_mutated_real_playlists(text: str, data: st.DataObject) -> None:
    raw = bytearray(text.encode())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    check_parse(bytes(raw[:cut]).decode("utf-8", errors="replace"))


def _outcome(parse: Callable[[str, str], MasterPlaylist | MediaPlaylist], text: str) -> object:
    try:
        return parse(text, BASE)
    except PlaylistError as exc:
        return f"PlaylistError: {exc}"


def _window(first: int, segments: list[tuple[int, float, bool, str]], head: list[str], endlist: bool) -> str:
    lines = ["#EXTM3U", *head, f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    for name, duration, discontinuity, extra in segments:
        if discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if extra:
            lines.append(extra)
        lines += [f"#EXTINF:{duration},", f"seg{name}.ts"]
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


SEGMENT_EXTRA = [
    "",
    "",
    "",
    "#EXT-X-PROGRAM-DATE-TIME:2026-11-30T12:00:00.000Z",
    "# a comment",
    '#EXT-X-KEY:METHOD=AES-128,URI="k.bin"',  # not plain: parsed whole
    "#EXT-X-BYTERANGE:100@0",  # refused, by both
    "orphan.ts",  # a URI without EXTINF: m3u8 drops it, so the cut does not fit
]


@given(
    st.integers(0, 10_000),
    st.lists(
        st.tuples(
            st.sampled_from([0, 0, 0, 0, -3, 2]),  # the media sequence jumps (an origin restart)
            st.integers(0, 3),  # segments the window slides by
            st.lists(
                st.tuples(
                    st.sampled_from([2.0, 2.002, 1.5, 0.0, 500.0]),
                    st.booleans(),
                    st.sampled_from(SEGMENT_EXTRA),
                ),
                max_size=3,
            ),  # segments added
        ),
        min_size=1,
        max_size=8,
    ),
    st.lists(
        st.sampled_from(
            [
                "#EXT-X-VERSION:3",
                "#EXT-X-TARGETDURATION:2",
                "#EXT-X-TARGETDURATION:200",
                "#EXT-X-INDEPENDENT-SEGMENTS",
            ]
        ),
        max_size=3,
    ),
    st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_reload_parser_gives_what_the_whole_parse_gives(
    first: int,
    steps: list[tuple[int, int, list[tuple[float, bool, str]]]],
    head: list[str],
    endlist: bool,
) -> None:
    """A live playlist's reloads (a sliding window, with discontinuities, date-times, tags
    that are not plain, bad durations): PlaylistParser's answer to each is the whole parse's."""
    if not any(h.startswith("#EXT-X-TARGETDURATION") for h in head):
        head = [*head, "#EXT-X-TARGETDURATION:2"]
    parser = PlaylistParser()
    window: list[tuple[int, float, bool, str]] = []
    names = 0
    for n, (jump, slide, added) in enumerate(steps):
        slide = min(slide, len(window))
        first = max(0, first + jump) + slide
        window = window[slide:] + [(names + i, *segment) for i, segment in enumerate(added)]
        names += len(added)
        text = _window(first, window, head, endlist and n == len(steps) - 1)
        assert _outcome(parser.parse, text) == _outcome(parse_playlist, text)


def test_reload_parser_takes_known_segments_from_the_last_load() -> None:
    parser = PlaylistParser()
    for first in range(100, 110):
        playlist = parser.parse(media(first, 15), BASE)
        assert playlist == parse_playlist(media(first, 15), BASE)
    assert parser.reused == 9 * 14  # each reload: 14 of its 15 segments were listed before
    # Another URL, or a playlist that is not plain, starts afresh.
    parser.parse(media(110, 15), BASE + "?other")
    assert parser.reused == 9 * 14
    keyed = media(111, 15, extra='#EXT-X-KEY:METHOD=AES-128,URI="k"')
    assert parser.parse(keyed, BASE + "?other") == parse_playlist(keyed, BASE + "?other")
    assert parser.reused == 9 * 14
