"""Table-driven bad input: one case (at least) per validation rule, checking HTTP status and Code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TEST_AK, TEST_SK

from liverelay.api.testing import SEED_DOMAINS, BackgroundApi, SignedClient, api_settings

MAX_BODY = 4096


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedClient]:
    data: Path = tmp_path_factory.mktemp("validation")
    settings = api_settings(data, rate_limit_per_s=1000, rate_burst=1000, max_body_bytes=MAX_BODY)
    with (
        BackgroundApi(settings, keys=[(TEST_AK, TEST_SK)]) as server,
        SignedClient(server.host, TEST_AK, TEST_SK) as c,
    ):
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


def rejected(action: str, body: Any, code: str = BAD, *, status: int = 400, id: str) -> Any:
    """A CASES row: `action` with `body` must fail with HTTP `status` and Error.Code `code`."""
    return pytest.param(action, body, status, code, id=id)


CASES: list[Any] = [
    # --- App / Stream / Vhost patterns and lengths ---
    rejected("UpdateRelaySourceV3", v3(App="li ve"), id="v3-app-space"),
    rejected("UpdateRelaySourceV3", v3(App="a" * 31), id="v3-app-31-chars"),
    rejected("UpdateRelaySourceV3", v3(App="直播"), id="v3-app-non-ascii"),
    rejected("CreateRelaySourceV4", v4(App="a/b"), id="v4-app-slash"),
    rejected("CreateRelaySourceV4", v4(App="x" * 31), id="v4-app-too-long"),
    rejected("CreateRelaySourceV4", v4(Stream="s" * 101), id="v4-stream-101-chars"),
    rejected("CreateRelaySourceV4", v4(Stream="a b"), id="v4-stream-space"),
    rejected("CreateRelaySourceV4", v4(Stream="s?x=1"), id="v4-stream-query"),
    rejected(
        "DeleteRelaySourceV4",
        {"Domain": "pull.example.com", "App": "live", "Stream": "../x"},
        id="v4-delete-stream-pattern",
    ),
    rejected("DescribeRelaySourceV3", {"Vhost": "a b"}, id="vhost-pattern"),
    # --- addresses ---
    rejected(
        "CreateRelaySourceV4",
        v4(SrcAddrS=[f"rtmp://o{i}.example.org/l/s" for i in range(11)]),
        id="v4-11-addresses",
    ),
    rejected("CreateRelaySourceV4", v4(SrcAddrS=[]), id="v4-no-addresses"),
    rejected("UpdateRelaySourceV3", v3_servers(*[server() for _ in range(11)]), id="v3-11-servers"),
    rejected(
        "UpdateRelaySourceV3", v3_servers(*[server() for _ in range(6)], groups=2), id="v3-12-servers-total"
    ),
    rejected("UpdateRelaySourceV3", v3_servers(server(RelaySourceProtocol="hls")), id="v3-protocol"),
    rejected(
        "UpdateRelaySourceV3",
        v3_servers(server(RelaySourceDomain="rtmp://o.example.org")),
        id="v3-domain-with-scheme",
    ),
    rejected(
        "UpdateRelaySourceV3",
        v3_servers(server(RelaySourceDomain="o.example.org:99999")),
        id="v3-domain-bad-port",
    ),
    rejected("UpdateRelaySourceV3", v3_servers(server(RelaySourceDomain="2001:db8::1")), id="v3-bare-ipv6"),
    rejected("UpdateRelaySourceV3", v3_servers(server(RelaySourceDomain="[2001:db8::1")), id="v3-open-ipv6"),
    rejected("UpdateRelaySourceV3", v3_servers(server(RelaySourceDomain="")), id="v3-empty-domain"),
    rejected(
        "UpdateRelaySourceV3",
        v3_servers(server(RelaySourceDomain="o.example.org/live")),
        id="v3-domain-with-path",
    ),
    rejected("UpdateRelaySourceV3", v3(GroupDetails=[]), id="v3-no-groups"),
    rejected("UpdateRelaySourceV3", v3_servers(), id="v3-group-without-servers"),
    rejected(
        "UpdateRelaySourceV3",
        v3(GroupDetails=[V3["GroupDetails"][0], V3["GroupDetails"][0]]),
        id="v3-duplicate-group",
    ),
    rejected("CreateRelaySourceV4", v4(SrcAddrS=["ftp://o.example.org/x"]), id="v4-scheme-ftp"),
    rejected("CreateRelaySourceV4", v4(SrcAddrS=["file:///etc/passwd"]), id="v4-scheme-file"),
    rejected("CreateRelaySourceV4", v4(SrcAddrS=["origin.example.org/live/s"]), id="v4-no-scheme"),
    rejected("CreateRelaySourceV4", v4(SrcAddrS=["rtmp:///live/s"]), id="v4-no-host"),
    rejected("CreateRelaySourceV4", v4(SrcAddrS=["rtmp://o.example.org:0/l"]), id="v4-port-0"),
    rejected("CreateRelaySourceV4", v4(SrcAddrS=["rtmp://o.example.org/l s"]), id="v4-url-space"),
    # --- schedule ---
    rejected("CreateRelaySourceV4", v4(EndTime=...), id="v4-start-only"),
    rejected("CreateRelaySourceV4", v4(StartTime=...), id="v4-end-only"),
    rejected("CreateRelaySourceV4", v4(EndTime=1683518058 + 604801), id="v4-span-over-7-days"),
    rejected("CreateRelaySourceV4", v4(EndTime=1683518058), id="v4-end-equals-start"),
    rejected("CreateRelaySourceV4", v4(EndTime=1683518000), id="v4-end-before-start"),
    rejected("UpdateRelaySourceV4", v4(Stream="s1", EndTime=1683518000), id="v4-update-end-before-start"),
    rejected("CreateRelaySourceV4", v4(StartTime=-5), id="v4-negative-time"),
    rejected("CreateRelaySourceV4", v4(StartTime="soon"), BIND, id="v4-time-word"),
    rejected("CreateRelaySourceV4", v4(StartTime=1683518058.5), BIND, id="v4-time-float"),
    rejected("CreateRelaySourceV4", v4(StartTime=True), BIND, id="v4-time-bool"),
    # --- ranges ---
    rejected("ListRelaySourceV4", {"Domain": "pull.example.com", "Size": 501}, RANGE, id="list-size-501"),
    rejected("ListRelaySourceV4", {"Domain": "pull.example.com", "Size": 0}, RANGE, id="list-size-0"),
    rejected("ListRelaySourceV4", {"Domain": "pull.example.com", "Page": 0}, RANGE, id="list-page-0"),
    rejected("ListDomainDetail", {"PageNum": 1, "PageSize": 1001}, RANGE, id="domains-pagesize-1001"),
    rejected("ListDomainDetail", {"PageNum": 0, "PageSize": 10}, RANGE, id="domains-pagenum-0"),
    rejected("CreateDomain", {"Domain": "z.example.com", "Type": "play"}, RANGE, id="domain-type"),
    # --- wrong JSON types ---
    rejected("ListRelaySourceV4", {"Domain": "pull.example.com", "Size": "20"}, BIND, id="size-string"),
    rejected("ListRelaySourceV4", {"Domain": 7}, BIND, id="domain-number"),
    rejected("CreateRelaySourceV4", v4(SrcAddrS="rtmp://o.example.org/l/s"), BIND, id="srcaddrs-string"),
    rejected("CreateRelaySourceV4", v4(SrcAddrS=[1, 2]), BIND, id="srcaddrs-numbers"),
    rejected("CreateRelaySourceV4", v4(App=["live"]), BIND, id="app-array"),
    rejected("UpdateRelaySourceV3", v3(GroupDetails={"Group": "g"}), BIND, id="groups-object"),
    rejected("UpdateRelaySourceV3", v3(GroupDetails=["g"]), BIND, id="group-string"),
    rejected(
        "UpdateRelaySourceV3", v3_servers(server(RelaySourceParams={"k": 1})), BIND, id="params-number-value"
    ),
    rejected("UpdateRelaySourceV3", v3_servers(server(RelaySourceParams=["k"])), BIND, id="params-array"),
    rejected("DescribeDomain", {"DomainList": "pull.example.com"}, BIND, id="domainlist-string"),
    # --- missing required fields ---
    rejected(
        "UpdateRelaySourceV3", {"App": "live", "GroupDetails": V3["GroupDetails"]}, id="v3-missing-vhost"
    ),
    rejected("UpdateRelaySourceV3", {"Vhost": "push.example.com"}, id="v3-missing-groups"),
    rejected(
        "UpdateRelaySourceV3", v3_servers({"RelaySourceDomain": "o.example.org"}), id="v3-missing-protocol"
    ),
    rejected("CreateRelaySourceV4", v4(Domain=...), id="v4-missing-domain"),
    rejected("CreateRelaySourceV4", v4(Stream=...), id="v4-missing-stream"),
    rejected("CreateRelaySourceV4", v4(App=""), id="v4-empty-app"),
    rejected("CreateRelaySourceV4", v4(SrcAddrS=...), id="v4-missing-srcaddrs"),
    rejected("ListRelaySourceV4", {"Page": 1}, id="list-missing-domain"),
    rejected("ListDomainDetail", {"PageNum": 1}, id="domains-missing-pagesize"),
    rejected("CreateDomainV2", {"Vhost": "v"}, id="domainv2-missing-domains"),
    rejected("DeleteDomain", {}, id="deletedomain-missing-domain"),
    # --- state ---
    rejected("CreateRelaySourceV4", V4, id="v4-create-duplicate"),
    rejected("UpdateRelaySourceV4", v4(Stream="nope"), id="v4-update-missing"),
    rejected(
        "CreateRelaySourceV4",
        v4(Domain="unknown.example.com"),
        "RequestForbidden",
        status=403,
        id="v4-unknown-domain",
    ),
    rejected(
        "UpdateRelaySourceV3",
        v3(Vhost="unknown.example.com"),
        "RequestForbidden",
        status=403,
        id="v3-unknown-vhost",
    ),
    # --- the body itself ---
    rejected("ListRelaySourceV4", b"Domain=pull.example.com", BIND, id="not-json"),
    rejected("ListRelaySourceV4", b'{"Domain": "pull.example.com"', BIND, id="truncated-json"),
    rejected("ListRelaySourceV4", b'["Domain"]', BIND, id="json-array"),
    rejected("ListRelaySourceV4", b'"pull.example.com"', BIND, id="json-string"),
    rejected("ListRelaySourceV4", b"null", BIND, id="json-null"),
    rejected("ListRelaySourceV4", b'{"Domain": "pull\xff.example.com"}', BIND, id="invalid-utf8"),
    rejected("ListRelaySourceV4", b'{"Size": NaN, "Domain": "pull.example.com"}', BIND, id="json-nan"),
    rejected("ListRelaySourceV4", b"[" * 100_000, "RequestEntityTooLarge", status=413, id="oversized"),
    rejected("ListRelaySourceV4", b"[" * 2000 + b"]" * 2000, BIND, id="deep-nesting"),
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
from typing_extensions import TypedDict  # noqa: E402

from liverelay.api.binding import bind  # noqa: E402
from liverelay.api.errors import ApiError  # noqa: E402
from liverelay.schemas.fields import UnixTime, request_adapter  # noqa: E402
from liverelay.schemas.relay_sources import RELAY_SOURCE_V4, UPDATE_RELAY_SOURCE_V3  # noqa: E402


def check_origin_url(url: str, name: str) -> str:
    """One origin URL through the real request validator (CreateRelaySourceV4's SrcAddrS)."""
    del name
    return bind(RELAY_SOURCE_V4, {"App": "a", "Stream": "s", "SrcAddrS": [url]})["SrcAddrS"][0]


def check_host_port(value: str, name: str) -> str:
    """One origin address through the real request validator (a V3 server's RelaySourceDomain)."""
    del name
    server = {"RelaySourceProtocol": "rtmp", "RelaySourceDomain": value}
    req = bind(UPDATE_RELAY_SOURCE_V3, {"Vhost": "v", "GroupDetails": [{"Group": "g", "Servers": [server]}]})
    return req["GroupDetails"][0]["Servers"][0]["RelaySourceDomain"]


class _Times(TypedDict, total=False):
    StartTime: UnixTime


_TIMES = request_adapter(_Times)


def get_unix_time(body: dict[str, object], name: str) -> int | None:
    """One time field through the field type every V4 request uses."""
    return bind(_TIMES, body).get("StartTime") if name == "StartTime" else None


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
