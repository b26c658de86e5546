"""Table-driven bad input: one case (at least) per validation rule, checking HTTP status and Code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liverelay.api.testing import SEED_DOMAINS, BackgroundApi, SignedClient, api_settings

AK = "AKLTtestaccesskeyid00000000"
SK = "dGVzdHNlY3JldGFjY2Vzc2tleTAwMDAwMDAwMDAwMA=="
MAX_BODY = 4096


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedClient]:
    data: Path = tmp_path_factory.mktemp("validation")
    settings = api_settings(data, rate_limit_per_s=1000, rate_burst=1000, max_body_bytes=MAX_BODY)
    with BackgroundApi(settings, keys=[(AK, SK)]) as server, SignedClient(server.host, AK, SK) as c:
        c.ok("CreateDomainV2", SEED_DOMAINS)
        c.ok("CreateRelaySourceV4", V4)
        yield c


V3: dict[str, Any] = {
    "Vhost": "push.example.com",
    "App": "live",
    "GroupDetails": [
        {
            "Group": "g",
            "Servers": [{"RelaySourceProtocol": "rtmp", "RelaySourceDomain": "origin.example.org"}],
        }
    ],
}
V4: dict[str, Any] = {
    "Domain": "pull.example.com",
    "App": "live",
    "Stream": "s1",
    "SrcAddrS": ["rtmp://origin.example.org/live/s1"],
    "StartTime": 1683518058,
    "EndTime": 1683777258,
}


def v3(**changes: Any) -> dict[str, Any]:
    return {**V3, **changes}


def v3_servers(*servers: dict[str, Any], groups: int = 1) -> dict[str, Any]:
    return v3(GroupDetails=[{"Group": f"g{i}", "Servers": list(servers)} for i in range(groups)])


def server(**changes: Any) -> dict[str, Any]:
    return {"RelaySourceProtocol": "rtmp", "RelaySourceDomain": "origin.example.org", **changes}


def v4(**changes: Any) -> dict[str, Any]:
    """V4 with changes (`...` removes a field). The stream does not exist yet, so a Create
    fails only for the change; Update cases name the existing stream "s1" explicitly."""
    body = {**V4, "Stream": "fresh", **changes}
    return {k: v for k, v in body.items() if v is not ...}


BAD = "InvalidParam"
BIND = "InvalidParam.BindError"
RANGE = "InvalidParam.OutOfRange"

CASES: list[Any] = [
    # --- App / Stream / Vhost patterns and lengths ---
    pytest.param("UpdateRelaySourceV3", v3(App="li ve"), 400, BAD, id="v3-app-space"),
    pytest.param("UpdateRelaySourceV3", v3(App="a" * 31), 400, BAD, id="v3-app-31-chars"),
    pytest.param("UpdateRelaySourceV3", v3(App="直播"), 400, BAD, id="v3-app-non-ascii"),
    pytest.param("CreateRelaySourceV4", v4(App="a/b"), 400, BAD, id="v4-app-slash"),
    pytest.param("CreateRelaySourceV4", v4(App="x" * 31), 400, BAD, id="v4-app-too-long"),
    pytest.param("CreateRelaySourceV4", v4(Stream="s" * 101), 400, BAD, id="v4-stream-101-chars"),
    pytest.param("CreateRelaySourceV4", v4(Stream="a b"), 400, BAD, id="v4-stream-space"),
    pytest.param("CreateRelaySourceV4", v4(Stream="s?x=1"), 400, BAD, id="v4-stream-query"),
    pytest.param(
        "DeleteRelaySourceV4",
        {"Domain": "pull.example.com", "App": "live", "Stream": "../x"},
        400,
        BAD,
        id="v4-delete-stream-pattern",
    ),
    pytest.param("DescribeRelaySourceV3", {"Vhost": "a b"}, 400, BAD, id="vhost-pattern"),
    # --- addresses ---
    pytest.param(
        "CreateRelaySourceV4",
        v4(SrcAddrS=[f"rtmp://o{i}.example.org/l/s" for i in range(11)]),
        400,
        BAD,
        id="v4-11-addresses",
    ),
    pytest.param("CreateRelaySourceV4", v4(SrcAddrS=[]), 400, BAD, id="v4-no-addresses"),
    pytest.param(
        "UpdateRelaySourceV3", v3_servers(*[server() for _ in range(11)]), 400, BAD, id="v3-11-servers"
    ),
    pytest.param(
        "UpdateRelaySourceV3",
        v3_servers(*[server() for _ in range(6)], groups=2),
        400,
        BAD,
        id="v3-12-servers-total",
    ),
    pytest.param(
        "UpdateRelaySourceV3", v3_servers(server(RelaySourceProtocol="hls")), 400, BAD, id="v3-protocol"
    ),
    pytest.param(
        "UpdateRelaySourceV3",
        v3_servers(server(RelaySourceDomain="rtmp://o.example.org")),
        400,
        BAD,
        id="v3-domain-with-scheme",
    ),
    pytest.param(
        "UpdateRelaySourceV3",
        v3_servers(server(RelaySourceDomain="o.example.org:99999")),
        400,
        BAD,
        id="v3-domain-bad-port",
    ),
    pytest.param(
        "UpdateRelaySourceV3",
        v3_servers(server(RelaySourceDomain="2001:db8::1")),
        400,
        BAD,
        id="v3-bare-ipv6",
    ),
    pytest.param(
        "UpdateRelaySourceV3",
        v3_servers(server(RelaySourceDomain="[2001:db8::1")),
        400,
        BAD,
        id="v3-open-ipv6",
    ),
    pytest.param(
        "UpdateRelaySourceV3", v3_servers(server(RelaySourceDomain="")), 400, BAD, id="v3-empty-domain"
    ),
    pytest.param(
        "UpdateRelaySourceV3",
        v3_servers(server(RelaySourceDomain="o.example.org/live")),
        400,
        BAD,
        id="v3-domain-with-path",
    ),
    pytest.param("UpdateRelaySourceV3", v3(GroupDetails=[]), 400, BAD, id="v3-no-groups"),
    pytest.param("UpdateRelaySourceV3", v3_servers(), 400, BAD, id="v3-group-without-servers"),
    pytest.param(
        "UpdateRelaySourceV3",
        v3(GroupDetails=[V3["GroupDetails"][0], V3["GroupDetails"][0]]),
        400,
        BAD,
        id="v3-duplicate-group",
    ),
    pytest.param("CreateRelaySourceV4", v4(SrcAddrS=["ftp://o.example.org/x"]), 400, BAD, id="v4-scheme-ftp"),
    pytest.param("CreateRelaySourceV4", v4(SrcAddrS=["file:///etc/passwd"]), 400, BAD, id="v4-scheme-file"),
    pytest.param(
        "CreateRelaySourceV4", v4(SrcAddrS=["origin.example.org/live/s"]), 400, BAD, id="v4-no-scheme"
    ),
    pytest.param("CreateRelaySourceV4", v4(SrcAddrS=["rtmp:///live/s"]), 400, BAD, id="v4-no-host"),
    pytest.param("CreateRelaySourceV4", v4(SrcAddrS=["rtmp://o.example.org:0/l"]), 400, BAD, id="v4-port-0"),
    pytest.param(
        "CreateRelaySourceV4", v4(SrcAddrS=["rtmp://o.example.org/l s"]), 400, BAD, id="v4-url-space"
    ),
    # --- schedule ---
    pytest.param("CreateRelaySourceV4", v4(EndTime=...), 400, BAD, id="v4-start-only"),
    pytest.param("CreateRelaySourceV4", v4(StartTime=...), 400, BAD, id="v4-end-only"),
    pytest.param("CreateRelaySourceV4", v4(EndTime=1683518058 + 604801), 400, BAD, id="v4-span-over-7-days"),
    pytest.param("CreateRelaySourceV4", v4(EndTime=1683518058), 400, BAD, id="v4-end-equals-start"),
    pytest.param("CreateRelaySourceV4", v4(EndTime=1683518000), 400, BAD, id="v4-end-before-start"),
    pytest.param(
        "UpdateRelaySourceV4", v4(Stream="s1", EndTime=1683518000), 400, BAD, id="v4-update-end-before-start"
    ),
    pytest.param("CreateRelaySourceV4", v4(StartTime=-5), 400, BAD, id="v4-negative-time"),
    pytest.param("CreateRelaySourceV4", v4(StartTime="soon"), 400, BIND, id="v4-time-word"),
    pytest.param("CreateRelaySourceV4", v4(StartTime=1683518058.5), 400, BIND, id="v4-time-float"),
    pytest.param("CreateRelaySourceV4", v4(StartTime=True), 400, BIND, id="v4-time-bool"),
    # --- ranges ---
    pytest.param(
        "ListRelaySourceV4", {"Domain": "pull.example.com", "Size": 501}, 400, RANGE, id="list-size-501"
    ),
    pytest.param(
        "ListRelaySourceV4", {"Domain": "pull.example.com", "Size": 0}, 400, RANGE, id="list-size-0"
    ),
    pytest.param(
        "ListRelaySourceV4", {"Domain": "pull.example.com", "Page": 0}, 400, RANGE, id="list-page-0"
    ),
    pytest.param(
        "ListDomainDetail", {"PageNum": 1, "PageSize": 1001}, 400, RANGE, id="domains-pagesize-1001"
    ),
    pytest.param("ListDomainDetail", {"PageNum": 0, "PageSize": 10}, 400, RANGE, id="domains-pagenum-0"),
    pytest.param("CreateDomain", {"Domain": "z.example.com", "Type": "play"}, 400, RANGE, id="domain-type"),
    # --- wrong JSON types ---
    pytest.param(
        "ListRelaySourceV4", {"Domain": "pull.example.com", "Size": "20"}, 400, BIND, id="size-string"
    ),
    pytest.param("ListRelaySourceV4", {"Domain": 7}, 400, BIND, id="domain-number"),
    pytest.param(
        "CreateRelaySourceV4", v4(SrcAddrS="rtmp://o.example.org/l/s"), 400, BIND, id="srcaddrs-string"
    ),
    pytest.param("CreateRelaySourceV4", v4(SrcAddrS=[1, 2]), 400, BIND, id="srcaddrs-numbers"),
    pytest.param("CreateRelaySourceV4", v4(App=["live"]), 400, BIND, id="app-array"),
    pytest.param("UpdateRelaySourceV3", v3(GroupDetails={"Group": "g"}), 400, BIND, id="groups-object"),
    pytest.param("UpdateRelaySourceV3", v3(GroupDetails=["g"]), 400, BIND, id="group-string"),
    pytest.param(
        "UpdateRelaySourceV3",
        v3_servers(server(RelaySourceParams={"k": 1})),
        400,
        BIND,
        id="params-number-value",
    ),
    pytest.param(
        "UpdateRelaySourceV3", v3_servers(server(RelaySourceParams=["k"])), 400, BIND, id="params-array"
    ),
    pytest.param("DescribeDomain", {"DomainList": "pull.example.com"}, 400, BIND, id="domainlist-string"),
    # --- missing required fields ---
    pytest.param(
        "UpdateRelaySourceV3",
        {"App": "live", "GroupDetails": V3["GroupDetails"]},
        400,
        BAD,
        id="v3-missing-vhost",
    ),
    pytest.param("UpdateRelaySourceV3", {"Vhost": "push.example.com"}, 400, BAD, id="v3-missing-groups"),
    pytest.param(
        "UpdateRelaySourceV3",
        v3_servers({"RelaySourceDomain": "o.example.org"}),
        400,
        BAD,
        id="v3-missing-protocol",
    ),
    pytest.param("CreateRelaySourceV4", v4(Domain=...), 400, BAD, id="v4-missing-domain"),
    pytest.param("CreateRelaySourceV4", v4(Stream=...), 400, BAD, id="v4-missing-stream"),
    pytest.param("CreateRelaySourceV4", v4(App=""), 400, BAD, id="v4-empty-app"),
    pytest.param("CreateRelaySourceV4", v4(SrcAddrS=...), 400, BAD, id="v4-missing-srcaddrs"),
    pytest.param("ListRelaySourceV4", {"Page": 1}, 400, BAD, id="list-missing-domain"),
    pytest.param("ListDomainDetail", {"PageNum": 1}, 400, BAD, id="domains-missing-pagesize"),
    pytest.param("CreateDomainV2", {"Vhost": "v"}, 400, BAD, id="domainv2-missing-domains"),
    pytest.param("DeleteDomain", {}, 400, BAD, id="deletedomain-missing-domain"),
    # --- state ---
    pytest.param("CreateRelaySourceV4", V4, 400, BAD, id="v4-create-duplicate"),
    pytest.param("UpdateRelaySourceV4", v4(Stream="nope"), 400, BAD, id="v4-update-missing"),
    pytest.param(
        "CreateRelaySourceV4",
        v4(Domain="unknown.example.com"),
        403,
        "RequestForbidden",
        id="v4-unknown-domain",
    ),
    pytest.param(
        "UpdateRelaySourceV3", v3(Vhost="unknown.example.com"), 403, "RequestForbidden", id="v3-unknown-vhost"
    ),
    # --- the body itself ---
    pytest.param("ListRelaySourceV4", b"Domain=pull.example.com", 400, BIND, id="not-json"),
    pytest.param("ListRelaySourceV4", b'{"Domain": "pull.example.com"', 400, BIND, id="truncated-json"),
    pytest.param("ListRelaySourceV4", b'["Domain"]', 400, BIND, id="json-array"),
    pytest.param("ListRelaySourceV4", b'"pull.example.com"', 400, BIND, id="json-string"),
    pytest.param("ListRelaySourceV4", b"null", 400, BIND, id="json-null"),
    pytest.param("ListRelaySourceV4", b'{"Domain": "pull\xff.example.com"}', 400, BIND, id="invalid-utf8"),
    pytest.param(
        "ListRelaySourceV4", b'{"Size": NaN, "Domain": "pull.example.com"}', 400, BIND, id="json-nan"
    ),
    pytest.param("ListRelaySourceV4", b"[" * 100_000, 413, "RequestEntityTooLarge", id="oversized"),
    pytest.param("ListRelaySourceV4", b"[" * 2000 + b"]" * 2000, 400, BIND, id="deep-nesting"),
]


@pytest.mark.parametrize(("action", "body", "status", "code"), CASES)
def test_bad_input(client: SignedClient, action: str, body: Any, status: int, code: str) -> None:
    resp = client.post(action, body)
    data = resp.json()
    assert (resp.status_code, data["ResponseMetadata"]["Error"]["Code"]) == (status, code), resp.text
    assert data["ResponseMetadata"]["Action"] == action
    assert "Result" not in data


def test_bases_are_valid(client: SignedClient) -> None:
    """Control for the table: each base body is accepted, so a case fails only by its change."""
    assert client.post("UpdateRelaySourceV3", V3).status_code == 200
    assert client.post("UpdateRelaySourceV3", v3_servers(server())).status_code == 200
    assert client.post("UpdateRelaySourceV4", v4(Stream="s1")).status_code == 200
    resp = client.post("CreateRelaySourceV4", v4(Stream="control"))
    assert resp.status_code == 200, resp.text
    client.post("DeleteRelaySourceV4", {"Domain": "pull.example.com", "App": "live", "Stream": "control"})


GOOD: list[Any] = [
    pytest.param(
        "CreateRelaySourceV4",
        v4(Stream="past", StartTime="1683518058", EndTime="1683777258"),
        id="numeric-string-times-and-past-window",
    ),
    pytest.param(
        "CreateRelaySourceV4", v4(Stream="exactly-7-days", EndTime=1683518058 + 604800), id="span-7-days"
    ),
    pytest.param("CreateRelaySourceV4", v4(Stream="perm", StartTime=..., EndTime=...), id="permanent"),
    pytest.param("CreateRelaySourceV4", v4(Stream="perm2", StartTime="", EndTime=None), id="empty-times"),
    pytest.param("CreateRelaySourceV4", v4(Stream="s" * 100, App="a" * 30), id="max-lengths"),
    pytest.param(
        "CreateRelaySourceV4",
        v4(
            Stream="all-schemes",
            SrcAddrS=[
                "rtmp://a.example.org/l/s",
                "rtmps://a.example.org:443/l/s?token=abc",
                "http://10.0.0.1:8080/l/s.flv",
                "https://a.example.org/l/s.m3u8",
                "srt://a.example.org:9000?streamid=x",
                "http://[::1]:8080/l/s.flv",
            ],
        ),
        id="all-schemes",
    ),
    pytest.param(
        "CreateRelaySourceV4",
        v4(Stream="ten", SrcAddrS=[f"rtmp://o{i}.example.org/l" for i in range(10)]),
        id="ten-addresses",
    ),
    pytest.param("CreateRelaySourceV4", v4(Stream="extra", Unknown={"x": 1}), id="unknown-field-ignored"),
    pytest.param(
        "UpdateRelaySourceV3", v3_servers(*[server() for _ in range(5)], groups=2), id="v3-ten-servers"
    ),
    pytest.param(
        "UpdateRelaySourceV3",
        v3_servers(server(RelaySourceProtocol="FLV", RelaySourceDomain="1.2.3.4:80")),
        id="v3-flv-ip-port",
    ),
    pytest.param("ListRelaySourceV4", b"", id="empty-body-is-empty-object-but-domain-missing"),
]


@pytest.mark.parametrize(("action", "body"), GOOD)
def test_accepted_input(client: SignedClient, action: str, body: Any) -> None:
    resp = client.post(action, body)
    if body == b"":
        # An empty body binds as {}; the action then asks for its required field.
        assert (
            resp.status_code == 400
            and resp.json()["ResponseMetadata"]["Error"]["Message"] == "Domain is required"
        )
        return
    assert resp.status_code == 200, resp.text


# ---- the field checkers alone (sans-IO): any text gives a value or an ApiError, nothing else ----

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from liverelay.api.errors import ApiError  # noqa: E402
from liverelay.api.validation import check_host_port, check_origin_url, get_unix_time  # noqa: E402


@settings(max_examples=400, deadline=None)
@given(
    st.text(max_size=80)
    | st.from_regex(r"(rtmp|srt|https?)://[a-z0-9.:\[\]@%-]{0,30}(/.{0,20})?", fullmatch=True)
)
def test_origin_url_checker_total(url: str) -> None:
    try:
        assert check_origin_url(url, "SrcAddrS[0]") == url
    except ApiError as exc:
        assert (exc.status, exc.code) == (400, "InvalidParam")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60) | st.from_regex(r"\[?[0-9a-f:.]{0,20}\]?(:[0-9]{0,6})?", fullmatch=True))
def test_host_port_checker_total(value: str) -> None:
    try:
        assert check_host_port(value, "RelaySourceDomain") == value
    except ApiError as exc:
        assert (exc.status, exc.code) == (400, "InvalidParam")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.text(max_size=20), st.floats(), st.booleans(), st.none()))
def test_unix_time_reader_total(value: object) -> None:
    try:
        result = get_unix_time({"StartTime": value}, "StartTime")
    except ApiError as exc:
        assert exc.code in ("InvalidParam", "InvalidParam.BindError")
    else:
        assert result is None or 0 < result < 2**32
