"""The actions over a real socket with a real store: what is written is what is read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TEST_AK, TEST_SK

from liverelay.api.testing import SEED_DOMAINS, BackgroundApi, SignedClient, api_settings
from liverelay.schemas.status import RelayStatusReport, RelayStatusRow
from liverelay.store import ChangeEvent


class StatusSource:
    """Stands in for RelayManager.status(): rows shaped like the relay package's."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.fail = False

    def status(self) -> RelayStatusReport:
        if self.fail:
            raise RuntimeError("relay manager exploded")
        return RelayStatusReport(rows=[RelayStatusRow.model_validate(row) for row in self.rows])


@pytest.fixture
def relays() -> StatusSource:
    return StatusSource()


@pytest.fixture
def api(tmp_path: Path, relays: StatusSource) -> Iterator[BackgroundApi]:
    settings = api_settings(tmp_path, rate_limit_per_s=1000, rate_burst=1000)
    with BackgroundApi(settings, keys=[(TEST_AK, TEST_SK)], relays=relays) as server:
        yield server


@pytest.fixture
def client(api: BackgroundApi) -> Iterator[SignedClient]:
    with SignedClient(api.host, TEST_AK, TEST_SK) as c:
        c.ok("CreateDomainV2", SEED_DOMAINS)
        yield c


def _error(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["ResponseMetadata"]["Error"]["Code"]


V3_BODY = {
    "Vhost": "push.example.com",
    "App": "live",
    "GroupDetails": [
        {
            "Group": "relay1",
            "Servers": [
                {
                    "RelaySourceProtocol": "rtmp",
                    "RelaySourceDomain": "origin-a.example.org:1936",
                    "RelaySourceParams": {"k": "v"},
                },
                {"RelaySourceProtocol": "flv", "RelaySourceDomain": "10.0.0.1"},
            ],
        },
        {"Group": "relay2", "Servers": [{"RelaySourceProtocol": "RTMP", "RelaySourceDomain": "[::1]:1935"}]},
    ],
}


def test_v3_update_describe_delete(client: SignedClient) -> None:
    assert client.ok("UpdateRelaySourceV3", V3_BODY) == {}
    listed = client.ok("DescribeRelaySourceV3", {"Vhost": "push.example.com"})["RelaySourceConfigList"]
    assert listed == [
        {
            "Vhost": "push.example.com",
            "App": "live",
            "GroupDetails": [
                {
                    "Group": "relay1",
                    "Servers": [
                        {
                            "RelaySourceProtocol": "rtmp",
                            "RelaySourceDomain": "origin-a.example.org:1936",
                            "RelaySourceParams": {"k": "v"},
                        },
                        {
                            "RelaySourceProtocol": "flv",
                            "RelaySourceDomain": "10.0.0.1",
                            "RelaySourceParams": {},
                        },
                    ],
                },
                {
                    "Group": "relay2",
                    "Servers": [
                        {
                            "RelaySourceProtocol": "rtmp",
                            "RelaySourceDomain": "[::1]:1935",
                            "RelaySourceParams": {},
                        },
                    ],
                },
            ],
        }
    ]
    # Group filter, and the vhost-wide config (no App) next to the App one.
    one = client.ok("DescribeRelaySourceV3", {"Vhost": "push.example.com", "App": "live", "Group": "relay2"})
    assert [g["Group"] for g in one["RelaySourceConfigList"][0]["GroupDetails"]] == ["relay2"]
    wide = {
        "Vhost": "push.example.com",
        "GroupDetails": [
            {
                "Group": "g",
                "Servers": [{"RelaySourceProtocol": "rtmp", "RelaySourceDomain": "wide.example.org"}],
            }
        ],
    }
    client.ok("UpdateRelaySourceV3", wide)
    apps = [
        c["App"]
        for c in client.ok("DescribeRelaySourceV3", {"Vhost": "push.example.com"})["RelaySourceConfigList"]
    ]
    assert apps == ["", "live"]
    # Update replaces all groups.
    client.ok("UpdateRelaySourceV3", {**V3_BODY, "GroupDetails": V3_BODY["GroupDetails"][1:]})
    one = client.ok("DescribeRelaySourceV3", {"Vhost": "push.example.com", "App": "live"})
    assert [g["Group"] for g in one["RelaySourceConfigList"][0]["GroupDetails"]] == ["relay2"]
    # Delete one group (the last one: the config goes), then deleting again is still a success.
    client.ok("DeleteRelaySourceV3", {"Vhost": "push.example.com", "App": "live", "Group": "relay2"})
    assert client.ok("DescribeRelaySourceV3", {"Vhost": "push.example.com", "App": "live"}) == {
        "RelaySourceConfigList": []
    }
    client.ok("DeleteRelaySourceV3", {"Vhost": "push.example.com", "App": "live"})
    client.ok("DeleteRelaySourceV3", {"Vhost": "push.example.com"})
    assert client.ok("DescribeRelaySourceV3", {"Vhost": "push.example.com"})["RelaySourceConfigList"] == []


def test_v3_unknown_vhost_is_forbidden(client: SignedClient) -> None:
    for action, body in [
        ("UpdateRelaySourceV3", {**V3_BODY, "Vhost": "nobody.example.com"}),
        ("DescribeRelaySourceV3", {"Vhost": "nobody.example.com"}),
        ("DeleteRelaySourceV3", {"Vhost": "nobody.example.com", "App": "live"}),
    ]:
        assert _error(client.post(action, body)) == (403, "RequestForbidden")


def _v4(stream: str, **extra: Any) -> dict[str, Any]:
    return {
        "Domain": "pull.example.com",
        "App": "live",
        "Stream": stream,
        "SrcAddrS": [f"rtmp://origin.example.org/live/{stream}"],
        **extra,
    }


def test_v4_create_update_list_delete(client: SignedClient) -> None:
    task = client.ok("CreateRelaySourceV4", _v4("a", StartTime="1683518058", EndTime=1683777258))["TaskId"]
    assert task.isdigit()
    assert _error(client.post("CreateRelaySourceV4", _v4("a"))) == (400, "InvalidParam")
    # Vhost instead of Domain; and the push domain of the same vhost addresses the same relays.
    client.ok("CreateRelaySourceV4", {**_v4("b"), "Domain": None, "Vhost": "push.example.com"})
    client.ok(
        "CreateRelaySourceV4",
        {
            **_v4("c"),
            "Domain": "push.example.com",
            "SrcAddrS": ["https://cdn.example.org/live/c.m3u8", "srt://o.example.org:9000"],
        },
    )
    listed = client.ok("ListRelaySourceV4", {"Domain": "push.example.com", "Page": 1, "Size": 20})
    assert listed["Pagination"] == {"PageCur": 1, "PageSize": 20, "PageTotal": 1, "TotalCount": 3}
    items = {i["Stream"]: i for i in listed["List"]}
    assert items["a"]["Domain"] == "pull.example.com"
    assert (items["a"]["StartTime"], items["a"]["EndTime"]) == (1683518058, 1683777258)
    assert items["a"]["TaskId"] == task
    assert items["b"]["Domain"] == "push.example.com" and "StartTime" not in items["b"]
    assert items["c"]["Domain"] == "push.example.com" and "EndTime" not in items["c"]
    assert items["c"]["SrcAddrS"] == ["https://cdn.example.org/live/c.m3u8", "srt://o.example.org:9000"]

    # Update: permanent -> scheduled and back; the TaskId and the created Domain stay.
    client.ok("UpdateRelaySourceV4", _v4("a", SrcAddrS=["rtmp://new.example.org/live/a"]))
    client.ok("UpdateRelaySourceV4", _v4("b", StartTime=2000000000, EndTime=2000000000 + 604800))
    items = {i["Stream"]: i for i in client.ok("ListRelaySourceV4", {"Vhost": "push.example.com"})["List"]}
    assert "StartTime" not in items["a"] and items["a"]["SrcAddrS"] == ["rtmp://new.example.org/live/a"]
    assert items["a"]["TaskId"] == task and items["a"]["Domain"] == "pull.example.com"
    assert items["b"]["EndTime"] - items["b"]["StartTime"] == 604800
    assert _error(client.post("UpdateRelaySourceV4", _v4("zzz"))) == (400, "InvalidParam")

    # Paging: Size 2 -> 2 pages, PageSize echoes the requested Size.
    page2 = client.ok("ListRelaySourceV4", {"Domain": "pull.example.com", "Page": 2, "Size": 2})
    assert page2["Pagination"] == {"PageCur": 2, "PageSize": 2, "PageTotal": 2, "TotalCount": 3}
    assert [i["Stream"] for i in page2["List"]] == ["c"]
    assert client.ok("ListRelaySourceV4", {"Domain": "pull.example.com", "Page": 9})["List"] == []

    client.ok("DeleteRelaySourceV4", {"Domain": "pull.example.com", "App": "live", "Stream": "a"})
    client.ok("DeleteRelaySourceV4", {"Domain": "pull.example.com", "App": "live", "Stream": "a"})
    assert client.ok("ListRelaySourceV4", {"Domain": "pull.example.com"})["Pagination"]["TotalCount"] == 2


def test_v4_unknown_domain_is_forbidden(client: SignedClient) -> None:
    assert _error(client.post("CreateRelaySourceV4", {**_v4("x"), "Domain": "no.example.com"})) == (
        403,
        "RequestForbidden",
    )
    assert _error(client.post("ListRelaySourceV4", {"Domain": "no.example.com"})) == (403, "RequestForbidden")
    assert _error(client.post("ListRelaySourceV4", {"Vhost": "no.example.com"})) == (403, "RequestForbidden")
    assert _error(client.post("CreateRelaySourceV4", {**_v4("x"), "Vhost": "other"})) == (400, "InvalidParam")


def test_writes_reach_the_bus(api: BackgroundApi, client: SignedClient) -> None:
    events: list[ChangeEvent] = []
    api.store.bus.subscribe(events.append)
    client.ok("CreateRelaySourceV4", _v4("bus"))
    client.ok("UpdateRelaySourceV3", V3_BODY)
    assert [(e.entity, e.op, e.key) for e in events] == [
        ("relay_v4", "added", ("push.example.com", "live", "bus")),
        ("relay_v3", "added", ("push.example.com", "live")),
    ]
    assert events[0].value.src_addrs == ("rtmp://origin.example.org/live/bus",)


def test_domain_actions(api: BackgroundApi, client: SignedClient) -> None:
    client.ok("CreateDomain", {"Domain": "Solo.Example.com", "Type": "pull-flv"})
    client.ok(
        "CreateDomain",
        {
            "Domain": "extra.example.com",
            "Type": "pull-flv",
            "Region": "cn-global",
            "Vhost": "push.example.com",
        },
    )
    assert api.store.domain_table.vhost_for("solo.example.com:8080") == "solo.example.com"
    assert api.store.domain_table.vhost_for("extra.example.com") == "push.example.com"
    assert _error(client.post("CreateDomain", {"Domain": "solo.example.com", "Type": "push"})) == (
        400,
        "InvalidParam",
    )

    described = client.ok("DescribeDomain", {"DomainList": ["pull.example.com", "missing.example.com"]})
    [record] = described["DomainList"]
    assert record["Domain"] == "pull.example.com" and record["Type"] == "pull-flv"
    assert record["Vhost"] == "push.example.com" and record["PushDomain"] == "push.example.com"
    assert record["Status"] == 0 and record["Region"] == "cn" and record["CreateTime"].endswith("Z")

    listed = client.ok("ListDomainDetail", {"PageNum": 1, "PageSize": 2})
    assert listed["Total"] == 4 and len(listed["DomainList"]) == 2
    assert listed["DomainList"][0]["ProjectName"] == "default"
    by_vhost = client.ok(
        "ListDomainDetail",
        {"PageNum": 1, "PageSize": 100, "VhostList": ["push.example.com"], "DomainTypeList": ["pull-flv"]},
    )
    assert sorted(d["Domain"] for d in by_vhost["DomainList"]) == ["extra.example.com", "pull.example.com"]

    client.ok("DeleteDomain", {"Domain": "solo.example.com"})
    client.ok("DeleteDomain", {"Domain": "solo.example.com"})  # idempotent
    assert api.store.domain_table.vhost_for("solo.example.com") is None
    assert client.ok("ListDomainDetail", {"PageNum": 1, "PageSize": 100})["Total"] == 3


def test_vhost_domain_limit(client: SignedClient) -> None:
    many = {
        "Vhost": "push.example.com",
        "Domains": [
            {"DomainName": f"d{i}.example.com", "Type": "pull-flv", "Region": "cn"} for i in range(9)
        ],
    }
    assert _error(client.post("CreateDomainV2", many)) == (400, "InvalidParam")  # 2 + 9 > 10
    many["Domains"] = many["Domains"][:8]
    client.ok("CreateDomainV2", many)


def test_describe_relay_status(client: SignedClient, relays: StatusSource) -> None:
    relays.rows = [
        {"Type": "play", "Vhost": "push.example.com", "App": "live", "Stream": "a", "State": "up"},
        {"Type": "fixed", "Vhost": "push.example.com", "App": "live", "Stream": "b", "State": "scheduled"},
        {"Type": "fixed", "Vhost": "other", "App": "tv", "Stream": "c", "State": "up"},
    ]
    assert len(client.ok("DescribeRelayStatus", {})["RelayStatusList"]) == 3
    fixed = client.ok("DescribeRelayStatus", {"Type": "fixed", "Vhost": "push.example.com"})[
        "RelayStatusList"
    ]
    assert fixed == [relays.rows[1]]
    assert client.ok("DescribeRelayStatus", {"App": "tv", "Stream": "c"})["RelayStatusList"] == [
        relays.rows[2]
    ]
    assert _error(client.post("DescribeRelayStatus", {"Type": "v3"})) == (400, "InvalidParam.OutOfRange")


def test_internal_error_hides_the_traceback(client: SignedClient, relays: StatusSource) -> None:
    relays.fail = True
    resp = client.post("DescribeRelayStatus", {})
    assert _error(resp) == (500, "InternalError")
    assert "exploded" not in resp.text and "Traceback" not in resp.text
    relays.fail = False
    assert client.ok("DescribeRelayStatus", {}) == {"RelayStatusList": []}


def test_describe_relay_status_without_relay_manager(tmp_path: Path) -> None:
    with (
        BackgroundApi(api_settings(tmp_path), keys=[(TEST_AK, TEST_SK)]) as server,
        SignedClient(server.host, TEST_AK, TEST_SK) as c,
    ):
        assert c.ok("DescribeRelayStatus", {"Type": "play"}) == {"RelayStatusList": []}


def test_move_disable_enable_domain(api: BackgroundApi, client: SignedClient) -> None:
    table = api.store.domain_table
    client.ok("UpdateDomainVhost", {"Domain": "pull.example.com", "Vhost": "other-vhost"})
    assert table.vhost_for("pull.example.com") == "other-vhost"
    client.ok("DisableDomain", {"Domain": "pull.example.com"})
    assert table.vhost_for("pull.example.com") is None  # media servers no longer serve it
    [record] = client.ok("DescribeDomain", {"DomainList": ["pull.example.com"]})["DomainList"]
    assert record["Status"] == 2 and record["Vhost"] == "other-vhost"
    client.ok("EnableDomain", {"Domain": "pull.example.com"})
    assert table.vhost_for("pull.example.com") == "other-vhost"
    assert _error(client.post("DisableDomain", {"Domain": "nope.example.com"})) == (403, "RequestForbidden")
    assert _error(client.post("UpdateDomainVhost", {"Domain": "pull.example.com"})) == (400, "InvalidParam")


def test_status_rows_with_non_json_values(client: SignedClient, relays: StatusSource) -> None:
    from datetime import UTC, datetime

    relays.rows = [{"Type": "fixed", "Vhost": "v", "Since": datetime(2024, 1, 1, tzinfo=UTC)}]
    [row] = client.ok("DescribeRelayStatus", {})["RelayStatusList"]
    assert row["Since"] == "2024-01-01 00:00:00+00:00"
