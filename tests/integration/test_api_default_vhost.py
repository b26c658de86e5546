"""Issue 9 §10 at the API: the default vhost is a first-class vhost for V3 and V4 configs
(it has no domains by definition); in strict mode (no default vhost) it does not exist."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TEST_AK, TEST_SK

from liverelay.api.testing import BackgroundApi, SignedClient, api_settings

DEFAULT = "__defaultVhost__"
GROUP = {
    "Group": "g",
    "Servers": [{"RelaySourceProtocol": "rtmp", "RelaySourceDomain": "origin.example.org"}],
}
V4 = {"Vhost": DEFAULT, "App": "live", "Stream": "s", "SrcAddrS": ["rtmp://origin.example.org/live/s"]}


def _client(data: Path, default_vhost: str) -> Iterator[SignedClient]:
    settings = api_settings(data, rate_limit_per_s=1000, rate_burst=1000)
    settings.media.default_vhost = default_vhost
    with (
        BackgroundApi(settings, keys=[(TEST_AK, TEST_SK)]) as server,
        SignedClient(server.host, TEST_AK, TEST_SK) as c,
    ):
        yield c


@pytest.fixture
def client(tmp_path: Path) -> Iterator[SignedClient]:
    yield from _client(tmp_path, DEFAULT)


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[SignedClient]:
    yield from _client(tmp_path, "")


def _code(resp: Any) -> tuple[int, str]:
    return resp.status_code, resp.json()["ResponseMetadata"]["Error"]["Code"]


def test_v3_on_the_default_vhost(client: SignedClient) -> None:
    assert client.ok("ListDomainDetail", {"PageNum": 1, "PageSize": 10})["Total"] == 0
    client.ok("UpdateRelaySourceV3", {"Vhost": DEFAULT, "App": "live", "GroupDetails": [GROUP]})
    client.ok("UpdateRelaySourceV3", {"Vhost": DEFAULT, "GroupDetails": [GROUP]})  # vhost-wide
    configs = client.ok("DescribeRelaySourceV3", {"Vhost": DEFAULT})["RelaySourceConfigList"]
    assert [(c["Vhost"], c["App"]) for c in configs] == [(DEFAULT, ""), (DEFAULT, "live")]
    client.ok("DeleteRelaySourceV3", {"Vhost": DEFAULT, "App": "live"})
    configs = client.ok("DescribeRelaySourceV3", {"Vhost": DEFAULT})["RelaySourceConfigList"]
    assert [c["App"] for c in configs] == [""]
    # Another vhost without domains is still unknown.
    body = {"Vhost": "nobody.example.com", "App": "live", "GroupDetails": [GROUP]}
    assert _code(client.post("UpdateRelaySourceV3", body)) == (403, "RequestForbidden")


def test_v4_on_the_default_vhost(client: SignedClient) -> None:
    task = client.ok("CreateRelaySourceV4", V4)["TaskId"]
    listed = client.ok("ListRelaySourceV4", {"Vhost": DEFAULT})
    assert [(r["Domain"], r["Vhost"], r["Stream"], r["TaskId"]) for r in listed["List"]] == [
        (DEFAULT, DEFAULT, "s", task)
    ]
    client.ok("UpdateRelaySourceV4", {**V4, "SrcAddrS": ["rtmp://other.example.org/live/s"]})
    assert client.ok("ListRelaySourceV4", {"Vhost": DEFAULT})["List"][0]["SrcAddrS"] == [
        "rtmp://other.example.org/live/s"
    ]
    client.ok("DeleteRelaySourceV4", {"Vhost": DEFAULT, "App": "live", "Stream": "s"})
    assert client.ok("ListRelaySourceV4", {"Vhost": DEFAULT})["List"] == []


def test_strict_mode_has_no_default_vhost(strict: SignedClient) -> None:
    for action, body in [
        ("UpdateRelaySourceV3", {"Vhost": DEFAULT, "App": "live", "GroupDetails": [GROUP]}),
        ("DescribeRelaySourceV3", {"Vhost": DEFAULT}),
        ("DeleteRelaySourceV3", {"Vhost": DEFAULT}),
        ("CreateRelaySourceV4", V4),
        ("ListRelaySourceV4", {"Vhost": DEFAULT}),
    ]:
        assert _code(strict.post(action, body)) == (403, "RequestForbidden"), action
