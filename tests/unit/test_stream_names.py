"""Stream names round-trip exactly between our pullers and our servers (docs/relay.md, "Stream names").

The edge builds an origin URL from the name a viewer asked for (relay.ondemand), the
puller turns the URL into what goes on the wire (sources.rtmp: the play name; sources.flv:
the request path), and the origin's server turns that back into a stream name
(servers.rtmp.split_name; aiohttp's decoded match_info for HTTP-FLV). These tests pin
the RTMP half with the real functions; tests/integration/test_relay_loops.py runs both
halves over real nodes.
"""

from __future__ import annotations

import pytest

from liverelay.relay.ondemand import build_origin_url
from liverelay.servers.rtmp import split_name
from liverelay.sources.rtmp import parse_rtmp_url

NAMES = ["s1", "a b", "100%", "a%20b", "a+b", "é中文", "a?b", "a#b", "x%ff", "%2541", "a&b=c", "a/b", "~._-"]


@pytest.mark.parametrize("name", NAMES)
def test_rtmp_name_round_trips_through_url_puller_and_server(name: str) -> None:
    url = build_origin_url("rtmp", "127.0.0.1:1935", "live", name, "")
    assert url is not None
    target = parse_rtmp_url(url)
    assert target.app == "live"
    got, query = split_name(target.stream)
    assert (got, query) == (name, "")


@pytest.mark.parametrize("name", NAMES)
def test_rtmp_name_round_trips_with_a_query(name: str) -> None:
    url = build_origin_url("rtmp", "127.0.0.1:1935", "live", name, "k=v%20w&z=1")
    assert url is not None
    got, query = split_name(parse_rtmp_url(url).stream)
    assert got == name
    assert query == "k=v%20w&z=1"  # the query is handed on undecoded (signatures)


def test_split_name_rules() -> None:
    # What ffmpeg/librtmp send: the name from the URL, raw; '?' starts the query (nginx-rtmp).
    assert split_name("cam?token=a%2Bb") == ("cam", "token=a%2Bb")
    assert split_name("a%20b") == ("a b", "")
    assert split_name("a b") == ("a b", "")  # a raw space (some clients) is the same stream
    assert split_name("a+b") == ("a+b", "")  # '+' is not a space in a path
    assert split_name("%E4%B8%AD") == ("中", "")
    assert split_name("中") == ("中", "")
    assert split_name("100%") == ("100%", "")  # not an escape: kept
    assert split_name("x%ff") == ("x%ff", "")  # escapes that are not UTF-8: kept as sent
    assert split_name("%2541") == ("%41", "")  # decoded once, not twice


def test_rtmp_url_with_the_apps_vhost_query() -> None:
    # SRS's form (cluster peer pulls): the vhost goes to the connect's app and tcUrl.
    target = parse_rtmp_url("rtmp://10.0.0.1:1936/live?vhost=pull.example.com/a%20b?token=x/y")
    assert (target.app, target.tc_url) == (
        "live?vhost=pull.example.com",
        "rtmp://10.0.0.1:1936/live?vhost=pull.example.com",
    )
    assert split_name(target.stream) == ("a b", "token=x/y")
    assert parse_rtmp_url("rtmp://h/live/s?k=a/b").stream == "s?k=a/b"  # two segments: unchanged
