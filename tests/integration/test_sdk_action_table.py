"""The SDK's one table of actions (sdk/actions.py) against the real API app: every method of
both clients sends its own Action, and the table and the server's registry agree."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from pydantic import TypeAdapter
from tests.conftest import TEST_AK, TEST_SK

from liverelay.api.actions import ACTIONS as SERVER_ACTIONS
from liverelay.api.testing import (
    SEED_CREATE_V4,
    SEED_DOMAINS,
    SEED_LIST_V4,
    SEED_UPDATE_V3,
    BackgroundApi,
    api_settings,
)
from liverelay.schemas.domains import DescribeDomainResult, ListDomainDetailResult
from liverelay.schemas.envelope import Response
from liverelay.schemas.relay_sources import (
    DescribeRelaySourceV3Result,
    DescribeRelayStatusResult,
    ListRelaySourceV4Result,
)
from liverelay.sdk import ACTIONS, Action, ActionMethods, AsyncLiveService, LiveAPIError, LiveService


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundApi]:
    settings = api_settings(tmp_path_factory.mktemp("sdk-table"), rate_limit_per_s=1000, rate_burst=1000)
    with BackgroundApi(settings, keys=[(TEST_AK, TEST_SK)]) as api:
        yield api


def test_table_matches_the_server() -> None:
    assert set(ACTIONS.values()) == set(SERVER_ACTIONS)
    assert len(set(ACTIONS.values())) == len(ACTIONS)  # one method per action
    for method in ACTIONS:
        assert isinstance(vars(ActionMethods)[method], Action)  # declared once, for both clients
        assert method in dir(LiveService) and method in dir(AsyncLiveService)


def _routed(caplog: pytest.LogCaptureFixture, request_id: str) -> str:
    """The Action the server logged for the request `request_id` (its error line)."""
    for record in caplog.records:
        text = record.getMessage()
        if record.name == "liverelay.api" and text.startswith(request_id + " "):
            return text.split(" ")[1]
    raise AssertionError(f"no server log line for {request_id}")


def _sent_action(caplog: pytest.LogCaptureFixture, response_or_error: object) -> str:
    if isinstance(response_or_error, LiveAPIError):
        assert response_or_error.code != "InvalidActionOrVersion", response_or_error
        return _routed(caplog, response_or_error.request_id)
    assert isinstance(response_or_error, dict)
    return str(response_or_error["ResponseMetadata"]["Action"])


@pytest.mark.parametrize("method", sorted(ACTIONS))
def test_every_method_sends_its_action(
    server: BackgroundApi, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    caplog.set_level(logging.INFO, logger="liverelay.api")
    expected = ACTIONS[method]

    def sync_call() -> object:
        with LiveService(server.host, TEST_AK, TEST_SK, "http", max_retries=0) as svc:
            try:
                return getattr(svc, method)({})
            except LiveAPIError as error:
                return error

    async def async_call() -> object:
        async with AsyncLiveService(server.host, TEST_AK, TEST_SK, "http", max_retries=0) as svc:
            try:
                return await getattr(svc, method)({})
            except LiveAPIError as error:
                return error

    assert _sent_action(caplog, sync_call()) == expected
    assert _sent_action(caplog, asyncio.run(async_call())) == expected


def test_body_must_be_a_mapping(server: BackgroundApi) -> None:
    with LiveService(server.host, TEST_AK, TEST_SK, "http", max_retries=0) as svc:
        with pytest.raises(TypeError):
            svc.describe_relay_status(["not", "a", "dict"])  # type: ignore[arg-type]
        assert "Error" not in svc.describe_relay_status()["ResponseMetadata"]  # no body = {}


def test_results_have_the_declared_shapes(server: BackgroundApi) -> None:
    """What the server answers validates against the Result TypedDicts the SDK is typed with."""
    with LiveService(server.host, TEST_AK, TEST_SK, "http", max_retries=0) as svc:
        svc.create_domain_v2(SEED_DOMAINS)
        svc.update_relay_source_v3(SEED_UPDATE_V3)
        svc.create_relay_source_v4(SEED_CREATE_V4)
        responses: list[tuple[object, object]] = [
            (svc.describe_relay_source_v3({"Vhost": "push.example.com"}), DescribeRelaySourceV3Result),
            (svc.list_relay_source_v4(SEED_LIST_V4), ListRelaySourceV4Result),
            (svc.describe_domain({"DomainList": ["pull.example.com"]}), DescribeDomainResult),
            (svc.list_domain_detail({"PageNum": 1, "PageSize": 10}), ListDomainDetailResult),
            (svc.describe_relay_status(), DescribeRelayStatusResult),
        ]
        for response, shape in responses:
            assert TypeAdapter(Response[shape]).validate_python(response, strict=True) == response  # type: ignore[valid-type]
        listed = svc.list_relay_source_v4(SEED_LIST_V4)["Result"]["List"]
        assert [(r["Stream"], r["StartTime"], r["EndTime"]) for r in listed] == [
            ("example_stream", 1683518058, 1683777258)
        ]
