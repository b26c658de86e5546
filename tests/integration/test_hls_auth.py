"""URL authentication on HLS (docs/auth.md) against a real `liverelay serve`: with a pull key,
the signed playlist URL opens a session and its segments, parts and sub-playlists work
with that session's token; a segment or playlist URL without a token or with a forged one
is a 403 with a log line naming why, on classic HLS and LL-HLS; ffprobe decodes the signed
classic URL (master -> media playlist -> segments, all through the node's own URIs)."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from urllib.parse import urljoin

import m3u8
import pytest
from tests.conftest import NodeProcess
from tests.integration.relay_helpers import ffprobe_video
from tests.integration.test_url_auth import (  # noqa: F401 - fixtures used by name
    _no_sdk_env,
    official,
    ok,
    published,
    set_keys,
    wait_log,
)

from liverelay.urlauth import signed_query

pytestmark = pytest.mark.timeout(180)

FORGED = "AAAAAAAAAAAAAAAAAAAAAAAA"


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def master_to_media(url: str) -> str:
    """The media playlist URL (with the session token) a signed master playlist names."""
    deadline = time.monotonic() + 30
    status = 0
    while time.monotonic() < deadline:
        status, body = fetch(url)
        if status == 200:
            master = m3u8.loads(body.decode())
            return urljoin(url, master.playlists[0].uri)
        assert status == 404, status  # the muxer still starting; never a 403 here
        time.sleep(0.3)
    raise AssertionError(f"no master playlist at {url} (last {status})")


def without_token(url: str) -> str:
    return re.sub(r"[?&]s=[^&]*", "", url)


def forged(url: str) -> str:
    return re.sub(r"([?&]s=)[^&]*", rf"\g<1>{FORGED}", url)


def test_hls_segments_need_the_signed_playlists_session(
    published: NodeProcess,  # noqa: F811 - the fixture of test_url_auth
    ffprobe: str,
) -> None:
    node = published
    set_keys(node, "pull", "pullkey1")
    result = ok(official(node).generate_play_url({"Domain": "127.0.0.1", "App": "live", "Stream": "s1"}))
    signed = {u["Protocol"]: u["URL"] for u in result["URLList"]}["hls"]
    query = signed.split("?", 1)[1]
    base = f"http://127.0.0.1:{node.http_port}/live/s1"

    # The entry points need the signature.
    assert fetch(f"{base}.m3u8")[0] == 403
    assert fetch(f"{base}/index.m3u8")[0] == 403
    wrong = signed_query("md5", "live", "s1", "notthekey", int(time.time()) + 600)
    assert fetch(f"{base}.m3u8?{wrong}")[0] == 403
    wait_log(node, "refused: signature mismatch")

    # Classic: signed master -> media playlist -> segment, all with the session's token.
    media = master_to_media(signed)
    assert "s=" in media and "volcTime" not in media
    status, body = fetch(media)
    assert status == 200, status
    playlist = m3u8.loads(body.decode())
    segment = urljoin(media, playlist.segments[-1].uri)
    status, data = fetch(segment)
    assert status == 200 and data[:1] == b"\x47"
    for url in (without_token(segment), without_token(media)):
        assert fetch(url)[0] == 403, url
    wait_log(node, "refused: missing session token")
    for url in (forged(segment), forged(media)):
        assert fetch(url)[0] == 403, url
    log = wait_log(node, "refused: unknown or expired session token")
    assert "pullkey1" not in log

    # LL-HLS: the same for its playlist, init segment and parts.
    ll = master_to_media(f"{base}/index.m3u8?{query}")
    status, body = fetch(ll)
    assert status == 200
    playlist = m3u8.loads(body.decode())
    init = urljoin(ll, playlist.segment_map[0].uri)
    assert fetch(init)[0] == 200
    parts = [p for s in playlist.segments for p in s.parts]
    assert parts, body
    part = urljoin(ll, parts[-1].uri)
    assert fetch(part)[0] == 200
    for url in (without_token(init), forged(init), without_token(part), forged(part), forged(ll)):
        assert fetch(url)[0] == 403, url

    # A player given the signed URL plays it: ffprobe follows the node's own URIs.
    info = ffprobe_video(ffprobe, signed, timeout=60)
    assert info["codec_name"] == "h264" and info["frames"] > 0
