"""Our SDK (sync and async) against the real API app and store: the seed's seven
bodies verbatim, what Describe/List return afterwards, errors and the paginator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TEST_AK, TEST_SK
from tests.integration.test_sdk_harness import LocalApi, run_local_api

from liverelay.api.testing import (
    SEED_CREATE_V4,
    SEED_DELETE_V3,
    SEED_DELETE_V4,
    SEED_DESCRIBE_V3,
    SEED_DOMAINS,
    SEED_LIST_V4,
    SEED_UPDATE_V3,
    SEED_UPDATE_V4,
)
from liverelay.sdk import (
    AsyncLiveService,
    AuthError,
    ForbiddenError,
    InvalidParamError,
    LiveService,
    NotFoundError,
    ThrottledError,
)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalApi]:
    with run_local_api(tmp_path / "node") as local:
        yield local


def client(api: LocalApi, **kwargs: Any) -> LiveService:
    return LiveService(api.host, TEST_AK, TEST_SK, "http", **kwargs)


def no_error(response: dict[str, Any], action: str) -> None:
    meta = response["ResponseMetadata"]
    assert "Error" not in meta
    assert meta["Action"] == action
    assert meta["RequestId"]


def v3_configs(response: dict[str, Any]) -> list[dict[str, Any]]:
    return response["Result"]["RelaySourceConfigList"]


def test_seed_examples_sync(api: LocalApi) -> None:
    with client(api) as svc:
        no_error(svc.create_domain_v2(SEED_DOMAINS), "CreateDomainV2")

        no_error(svc.update_relay_source_v3(SEED_UPDATE_V3), "UpdateRelaySourceV3")
        described = svc.describe_relay_source_v3(SEED_DESCRIBE_V3)
        no_error(described, "DescribeRelaySourceV3")
        assert v3_configs(described) == [SEED_UPDATE_V3]

        created = svc.create_relay_source_v4(SEED_CREATE_V4)
        no_error(created, "CreateRelaySourceV4")
        task_id = created["Result"]["TaskId"]
        assert isinstance(task_id, str) and task_id
        no_error(svc.update_relay_source_v4(SEED_UPDATE_V4), "UpdateRelaySourceV4")

        # The seed lists by the push domain: any domain of the vhost addresses it.
        listed = svc.list_relay_source_v4(SEED_LIST_V4)
        no_error(listed, "ListRelaySourceV4")
        items = listed["Result"]["List"]
        assert [(i["App"], i["Stream"], i["SrcAddrS"]) for i in items] == [
            ("live", "example_stream", ["rtmp://live.example.com"])
        ]
        assert (items[0]["StartTime"], items[0]["EndTime"]) == (1683518058, 1683777258)
        assert listed["Result"]["Pagination"]["TotalCount"] == 1

        # The seed deletes a stream that was never created: idempotent, nothing else goes.
        no_error(svc.delete_relay_source_v4(SEED_DELETE_V4), "DeleteRelaySourceV4")
        assert len(svc.list_relay_source_v4(SEED_LIST_V4)["Result"]["List"]) == 1
        no_error(
            svc.delete_relay_source_v4(
                {"App": "live", "Stream": "example_stream", "Domain": "pull.example.com"}
            ),
            "DeleteRelaySourceV4",
        )
        assert svc.list_relay_source_v4(SEED_LIST_V4)["Result"]["List"] == []

        no_error(svc.delete_relay_source_v3(SEED_DELETE_V3), "DeleteRelaySourceV3")
        assert v3_configs(svc.describe_relay_source_v3({"Vhost": "push.example.com"})) == []


async def test_seed_examples_async(api: LocalApi) -> None:
    async with AsyncLiveService(api.host, TEST_AK, TEST_SK, "http") as svc:
        await svc.create_domain_v2(SEED_DOMAINS)
        await svc.update_relay_source_v3(SEED_UPDATE_V3)
        assert v3_configs(await svc.describe_relay_source_v3(SEED_DESCRIBE_V3)) == [SEED_UPDATE_V3]
        await svc.create_relay_source_v4(SEED_CREATE_V4)
        await svc.update_relay_source_v4(
            {**SEED_UPDATE_V4, "SrcAddrS": ["rtmp://a.example/live", "srt://b:9000"]}
        )
        items = [item async for item in svc.iter_relay_sources_v4("pull.example.com")]
        assert [i["SrcAddrS"] for i in items] == [["rtmp://a.example/live", "srt://b:9000"]]
        await svc.delete_relay_source_v4(SEED_DELETE_V4)
        await svc.delete_relay_source_v3(SEED_DELETE_V3)
        assert v3_configs(await svc.describe_relay_source_v3({"Vhost": "push.example.com"})) == []


def test_domains_round_trip(api: LocalApi) -> None:
    with client(api) as svc:
        svc.create_domain_v2(SEED_DOMAINS)
        detail = svc.list_domain_detail({"PageNum": 1, "PageSize": 100})
        assert detail["Result"]["Total"] == 2
        by_name = {d["Domain"]: d for d in detail["Result"]["DomainList"]}
        assert by_name["push.example.com"]["Type"] == "push"
        assert by_name["pull.example.com"]["Type"] == "pull-flv"
        assert {d["Vhost"] for d in by_name.values()} == {"push.example.com"}
        described = svc.describe_domain({"DomainList": ["pull.example.com"]})
        assert [d["Domain"] for d in described["Result"]["DomainList"]] == ["pull.example.com"]
        svc.delete_domain({"Domain": "pull.example.com"})
        detail = svc.list_domain_detail({"PageNum": 1, "PageSize": 100})
        assert [d["Domain"] for d in detail["Result"]["DomainList"]] == ["push.example.com"]


def test_paginator_walks_three_pages(api: LocalApi) -> None:
    with client(api) as svc:
        svc.create_domain_v2(SEED_DOMAINS)
        for i in range(7):
            svc.create_relay_source_v4(
                {
                    "Domain": "pull.example.com",
                    "App": "live",
                    "Stream": f"s{i}",
                    "SrcAddrS": [f"rtmp://o{i}/live"],
                }
            )
        pages = [
            svc.list_relay_source_v4({"Domain": "pull.example.com", "Page": p, "Size": 3}) for p in (1, 2, 3)
        ]
        assert [len(p["Result"]["List"]) for p in pages] == [3, 3, 1]
        assert pages[0]["Result"]["Pagination"]["PageTotal"] == 3
        streams = [item["Stream"] for item in svc.iter_relay_sources_v4("pull.example.com", page_size=3)]
    assert sorted(streams) == [f"s{i}" for i in range(7)]
    assert len(set(streams)) == 7


def test_typed_errors_from_the_real_server(api: LocalApi) -> None:
    with client(api, max_retries=0) as svc:
        with pytest.raises(ForbiddenError) as forbidden:
            svc.create_relay_source_v4(SEED_CREATE_V4)  # no domains registered yet
        assert forbidden.value.code.startswith("RequestForbidden")
        assert forbidden.value.http_status == 403
        assert forbidden.value.request_id
        svc.create_domain_v2(SEED_DOMAINS)
        with pytest.raises(InvalidParamError):
            svc.create_relay_source_v4({**SEED_CREATE_V4, "EndTime": None})  # one time only
        with pytest.raises(InvalidParamError):
            svc.update_relay_source_v3({"Vhost": "push.example.com", "GroupDetails": "not a list"})
        with pytest.raises(NotFoundError) as unknown:
            svc.call("NoSuchAction", {})
        assert unknown.value.code == "InvalidActionOrVersion"
    with LiveService(api.host, TEST_AK, "wrong-secret", "http") as bad:
        with pytest.raises(AuthError) as auth:
            bad.describe_relay_source_v3(SEED_DESCRIBE_V3)
        assert auth.value.code == "SignatureDoesNotMatch"
    with LiveService(api.host, "AKLTnobody", TEST_SK, "http") as nobody:
        with pytest.raises(AuthError) as who:
            nobody.describe_relay_source_v3(SEED_DESCRIBE_V3)
        assert who.value.code == "InvalidAccessKey"


async def test_throttled_calls_are_retried_until_they_pass(tmp_path: Path) -> None:
    """Against the node's real limiter (5/s, burst 5): 12 quick reads all succeed."""
    body = {"PageNum": 1, "PageSize": 10}
    with run_local_api(tmp_path / "node", rate_limit_per_s=5, rate_burst=5) as local:
        # Control: without retries the limiter does refuse some of them.
        async with AsyncLiveService(local.host, TEST_AK, TEST_SK, "http", max_retries=0) as bare:
            outcomes = await asyncio.gather(
                *(bare.list_domain_detail(body) for _ in range(12)), return_exceptions=True
            )
        assert any(isinstance(o, ThrottledError) for o in outcomes)
        async with AsyncLiveService(
            local.host, TEST_AK, TEST_SK, "http", max_retries=8, backoff_base=0.1, backoff_max=1.0
        ) as svc:
            results = await asyncio.gather(*(svc.list_domain_detail(body) for _ in range(12)))
    assert all("Error" not in r["ResponseMetadata"] for r in results)
