"""Source policy (CIDR allow/deny) decisions, and the V3 origin URL building."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liverelay.config import RelaySettings
from liverelay.relay.ondemand import build_origin_url, build_origin_urls, merge_query
from liverelay.relay.policy import SourcePolicy, address_allowed, parse_cidrs, pinned_addresses
from liverelay.sources import SourceError, source_module_for
from liverelay.store.models import RelayGroup, RelayServer, RelayV3Config

# ---- CIDR decisions ----------------------------------------------------------------


def test_defaults_deny_link_local_and_metadata_but_allow_loopback_and_public() -> None:
    policy = SourcePolicy(RelaySettings())
    assert not policy.allowed("169.254.169.254")
    assert not policy.allowed("169.254.1.1")
    assert not policy.allowed("100.100.100.200")
    assert not policy.allowed("fe80::1")
    assert not policy.allowed("fd00:ec2::254")
    assert policy.allowed("127.0.0.1")
    assert policy.allowed("10.1.2.3")
    assert policy.allowed("203.0.113.7")
    assert policy.allowed("::1")


def test_ipv4_mapped_ipv6_cannot_bypass_an_ipv4_deny() -> None:
    policy = SourcePolicy(RelaySettings())
    assert not policy.allowed("::ffff:169.254.169.254")


def test_deny_wins_over_allow() -> None:
    allow = parse_cidrs(["10.0.0.0/8"])
    deny = parse_cidrs(["10.9.0.0/16"])
    assert address_allowed("10.1.1.1", allow, deny)
    assert not address_allowed("10.9.1.1", allow, deny)
    assert not address_allowed("192.0.2.1", allow, deny)  # not in a non-empty allow list


def test_empty_allow_list_allows_everything_not_denied() -> None:
    assert address_allowed("192.0.2.1", [], parse_cidrs(["10.0.0.0/8"]))
    assert address_allowed("2001:db8::1", [], parse_cidrs(["10.0.0.0/8"]))


def test_bare_address_is_a_host_route_and_bad_cidr_is_named() -> None:
    nets = parse_cidrs(["192.0.2.5"])
    assert not address_allowed("192.0.2.5", [], nets)
    assert address_allowed("192.0.2.6", [], nets)
    with pytest.raises(ValueError, match="not-a-cidr"):
        parse_cidrs(["not-a-cidr"])


@given(st.ip_addresses(v=4))
def test_deny_all_denies_every_v4_address(addr: object) -> None:
    assert not address_allowed(str(addr), [], parse_cidrs(["0.0.0.0/0"]))


async def test_check_url_resolves_names_and_refuses_denied_addresses() -> None:
    policy = SourcePolicy(RelaySettings(deny_cidrs=["127.0.0.0/8", "::1/128"]))
    with pytest.raises(SourceError) as info:
        await policy.check_url("rtmp://localhost:1935/live/s", timeout_s=2.0)
    assert info.value.reason == "policy"
    with pytest.raises(SourceError) as info:
        await SourcePolicy(RelaySettings()).check_url(
            "http://169.254.169.254/latest/meta-data", timeout_s=2.0
        )
    assert info.value.reason == "policy"
    await SourcePolicy(RelaySettings()).check_url("rtmp://127.0.0.1:1/live/s", timeout_s=2.0)


async def test_check_url_unresolvable_host_is_a_connect_failure() -> None:
    policy = SourcePolicy(RelaySettings())
    with pytest.raises(SourceError) as info:
        await asyncio.wait_for(policy.check_url("rtmp://no-such-host.invalid/a/b", timeout_s=3.0), 10)
    assert info.value.reason == "connect"


# ---- V3 URL building -----------------------------------------------------------------


def _config(*groups: list[RelayServer]) -> RelayV3Config:
    return RelayV3Config(
        vhost="vh",
        app="live",
        groups=tuple(RelayGroup(f"g{i}", tuple(servers)) for i, servers in enumerate(groups)),
        created=0,
        updated=0,
    )


def test_rtmp_and_flv_urls_with_default_ports() -> None:
    assert (
        build_origin_url("rtmp", "origin.example", "live", "s1", "") == "rtmp://origin.example:1935/live/s1"
    )
    assert (
        build_origin_url("flv", "origin.example", "live", "s1", "") == "http://origin.example:80/live/s1.flv"
    )
    assert build_origin_url("RTMP", "10.0.0.1:19350", "live", "s1", "") == "rtmp://10.0.0.1:19350/live/s1"
    assert build_origin_url("flv", "[::1]:8080", "a", "b", "") == "http://[::1]:8080/a/b.flv"
    assert build_origin_url("flv", "::1", "a", "b", "") == "http://[::1]:80/a/b.flv"
    assert build_origin_url("hls", "x", "a", "b", "") is None


def test_params_are_appended_to_the_viewer_query_and_encoded() -> None:
    query = merge_query("?token=abc&x=1", {"domain": "live.push.net", "k": "a b&c=d"})
    pairs = parse_qsl(query, keep_blank_values=True)
    assert pairs == [("token", "abc"), ("x", "1"), ("domain", "live.push.net"), ("k", "a b&c=d")]
    assert "a%20b%26c%3Dd" in query


def test_config_params_win_over_the_viewers_on_a_clash() -> None:
    pairs = parse_qsl(merge_query("auth=viewer&x=1", {"auth": "origin"}))
    assert pairs == [("x", "1"), ("auth", "origin")]


def test_origin_list_is_group_by_group_server_by_server() -> None:
    config = _config(
        [RelayServer("rtmp", "a.example"), RelayServer("flv", "b.example:8080", {"p": "1"})],
        [RelayServer("rtmp", "c.example:1936")],
    )
    urls = build_origin_urls(config, "live", "cam", "t=9")
    assert urls == [
        "rtmp://a.example:1935/live/cam?t=9",
        "http://b.example:8080/live/cam.flv?t=9&p=1",
        "rtmp://c.example:1936/live/cam?t=9",
    ]
    assert [source_module_for(u)[0] for u in urls] == ["rtmp", "flv", "rtmp"]


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(
    st.dictionaries(_TEXT.filter(bool), _TEXT, max_size=4),
    st.text(alphabet="abcdefgh0123456789_-.", min_size=1, max_size=10),
)
def test_params_round_trip_through_the_url(params: dict[str, str], stream: str) -> None:
    url = build_origin_url("flv", "h.example", "live", stream, merge_query("", params))
    assert url is not None
    parts = urlsplit(url)
    assert parts.path == f"/live/{stream}.flv"
    assert dict(parse_qsl(parts.query, keep_blank_values=True)) == params


def test_source_dispatch_by_scheme_and_extension() -> None:
    assert source_module_for("rtmp://h/a/b") == ("rtmp", "pull")
    assert source_module_for("rtmps://h/a/b") == ("rtmp", "pull")
    assert source_module_for("http://h/a/b.flv") == ("flv", "pull")
    assert source_module_for("https://h/a/b?x=.m3u8") == ("flv", "pull")
    assert source_module_for("https://h/a/index.M3U8?t=1") == ("hls", "pull")  # native (ISSUE-10)
    assert source_module_for("srt://h:9000?streamid=x") == ("ffmpeg", "pull_srt")
    for bad in ("ftp://h/x", "rtmp:///nohost", "nonsense"):
        with pytest.raises(SourceError) as info:
            source_module_for(bad)
        assert info.value.reason == "unsupported"


def test_open_source_loads_the_named_pull_function_from_its_table() -> None:
    """Every (module, function) source_module_for names has a typed loader, and it loads
    exactly that module's function."""
    import importlib

    from liverelay import sources

    cases = {
        "rtmp://h/a/b": ("rtmp", "pull"),
        "http://h/a/b.flv": ("flv", "pull"),
        "https://h/a/index.m3u8": ("hls", "pull"),
        "srt://h:9000?streamid=x": ("ffmpeg", "pull_srt"),
    }
    assert set(sources._LOADERS) == set(cases.values())
    for url, (module_name, func_name) in cases.items():
        module = importlib.import_module(f"liverelay.sources.{module_name}")
        assert sources.open_source(url) is vars(module)[func_name], url


# ---- "this host" and IPv4 embedded in IPv6 ----------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",
        "0.1.2.3",
        "::",
        "::ffff:0.0.0.0",
        "::ffff:169.254.169.254",  # IPv4-mapped
        "::ffff:0:169.254.169.254",  # IPv4-translated (SIIT)
        "::169.254.169.254",  # IPv4-compatible
        "64:ff9b::169.254.169.254",  # NAT64 well-known prefix
        "64:ff9b::a9fe:a9fe",  # the same, hex spelling
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254 (inverted bits)
        "2001:0:a9fe:a9fe::1",  # Teredo, server 169.254.169.254
        "::ffff:100.100.100.200",
        "64:ff9b::100.100.100.200",
    ],
)
def test_denied_ipv4_cannot_hide_in_any_ipv6_form(address: str) -> None:
    assert not SourcePolicy(RelaySettings()).allowed(address)


@pytest.mark.parametrize(
    "address", ["::1", "::ffff:127.0.0.1", "64:ff9b::203.0.113.7", "2002:cb00:7107::1", "2001:db8::1"]
)
def test_embedded_forms_of_allowed_ipv4_stay_allowed(address: str) -> None:
    assert SourcePolicy(RelaySettings()).allowed(address)


def test_an_operator_deny_applies_to_embedded_forms_too() -> None:
    policy = SourcePolicy(RelaySettings(deny_cidrs=["10.0.0.0/8"]))
    for address in ("10.1.2.3", "::ffff:10.1.2.3", "::10.1.2.3", "64:ff9b::10.1.2.3", "2002:a01:203::"):
        assert not policy.allowed(address), address
    assert policy.allowed("64:ff9b::11.1.2.3")


async def test_check_url_returns_what_it_checked_and_pins_it_for_the_puller() -> None:
    policy = SourcePolicy(RelaySettings())
    origin = await policy.check_url("rtmp://LocalHost:1935/live/s", timeout_s=2.0)
    assert origin.host == "localhost" and origin.addresses
    assert await pinned_addresses("localhost", RelaySettings()) == origin.addresses
    with pytest.raises(SourceError) as info:
        await policy.check_url("http://0.0.0.0:8080/live/s.flv", timeout_s=2.0)
    assert info.value.reason == "policy"
    with pytest.raises(SourceError) as info:
        await pinned_addresses("0.0.0.0", RelaySettings())  # a puller run on its own checks too
    assert info.value.reason == "policy"
