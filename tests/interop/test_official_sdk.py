"""The official volcengine SDK (1.0.229) against our API: the seed's seven calls, verbatim.

The SDK is synchronous, so the API runs in a background thread with its own loop.
`service_info_map` (host, scheme, credentials) is module-global in the SDK: each test
builds its LiveService right before use.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.conftest import TEST_AK, TEST_SK

from liverelay.api.testing import (
    SEED_CREATE_V4,
    SEED_DELETE_V3,
    SEED_DELETE_V4,
    SEED_DESCRIBE_V3,
    SEED_DOMAINS,
    SEED_LIST_V4,
    SEED_UPDATE_V3,
    SEED_UPDATE_V4,
    BackgroundApi,
)


def live_service(api: BackgroundApi, ak: str = TEST_AK, sk: str = TEST_SK) -> Any:
    from volcengine.live.v20230101.live_service import LiveService

    service = LiveService(api.host, ak, sk)
    service.set_scheme("http")
    return service


def _ok(response: Any) -> dict[str, Any]:
    """The SDK returns the parsed body of a 200; it must carry no Error."""
    assert isinstance(response, dict)
    meta = response["ResponseMetadata"]
    assert "Error" not in meta and meta["Service"] == "live" and meta["Region"] == "cn-north-1"
    return response.get("Result", {})  # type: ignore[no-any-return]


def _sdk_error(exc: BaseException) -> dict[str, Any]:
    """The SDK raises Exception(body_bytes) for any non-200 answer."""
    (raw,) = exc.args
    assert isinstance(raw, bytes)
    return json.loads(raw)["ResponseMetadata"]["Error"]  # type: ignore[no-any-return]


def test_seed_calls_verbatim(api: BackgroundApi) -> None:
    service = live_service(api)
    _ok(service.create_domain_v2(SEED_DOMAINS))

    # V3: update, describe (what was stored comes back), delete, describe again.
    assert _ok(service.update_relay_source_v3(SEED_UPDATE_V3)) == {}
    described = _ok(service.describe_relay_source_v3(SEED_DESCRIBE_V3))
    assert described == {"RelaySourceConfigList": [SEED_UPDATE_V3]}
    assert _ok(service.delete_relay_source_v3(SEED_DELETE_V3)) == {}
    assert _ok(service.describe_relay_source_v3(SEED_DESCRIBE_V3)) == {"RelaySourceConfigList": []}

    # V4: create, update, list (through the push domain of the same vhost), delete.
    task_id = _ok(service.create_relay_source_v4(SEED_CREATE_V4))["TaskId"]
    assert isinstance(task_id, str) and task_id.isdigit()
    assert _ok(service.update_relay_source_v4(SEED_UPDATE_V4)) == {}
    listed = _ok(service.list_relay_source_v4(SEED_LIST_V4))
    assert listed["Pagination"] == {"PageCur": 1, "PageSize": 20, "PageTotal": 1, "TotalCount": 1}
    [item] = listed["List"]
    assert {k: item[k] for k in ("Domain", "App", "Stream", "SrcAddrS", "StartTime", "EndTime")} == {
        "Domain": "pull.example.com",
        "App": "live",
        "Stream": "example_stream",
        "SrcAddrS": ["rtmp://live.example.com"],
        "StartTime": 1683518058,
        "EndTime": 1683777258,
    }
    assert item["TaskId"] == task_id
    # The seed deletes stream-123, which does not exist: an idempotent success that removes nothing.
    assert _ok(service.delete_relay_source_v4(SEED_DELETE_V4)) == {}
    assert _ok(service.list_relay_source_v4(SEED_LIST_V4))["Pagination"]["TotalCount"] == 1
    _ok(service.delete_relay_source_v4({**SEED_DELETE_V4, "Stream": "example_stream"}))
    assert _ok(service.list_relay_source_v4(SEED_LIST_V4))["List"] == []

    # What the SDK wrote is in the store.
    assert api.call(api.store.get_relay_v3("push.example.com", "live")) is None
    assert api.call(api.store.list_relay_v4("push.example.com"))[1] == 0


def test_writes_land_in_the_store(api: BackgroundApi) -> None:
    service = live_service(api)
    _ok(service.create_domain_v2(SEED_DOMAINS))
    _ok(service.update_relay_source_v3(SEED_UPDATE_V3))
    _ok(service.create_relay_source_v4(SEED_CREATE_V4))
    v3 = api.call(api.store.get_relay_v3("push.example.com", "live"))
    assert v3 is not None and v3.groups[0].servers[0].params == {"key1": "value1", "key2": "value2"}
    v4 = api.call(api.store.get_relay_v4("push.example.com", "live", "example_stream"))
    assert v4 is not None and v4.domain == "pull.example.com" and v4.start_time == 1683518058
    domains = _ok(service.describe_domain({"DomainList": ["push.example.com", "pull.example.com"]}))
    assert {d["Domain"]: d["Type"] for d in domains["DomainList"]} == {
        "push.example.com": "push",
        "pull.example.com": "pull-flv",
    }


def test_errors_raise_with_the_envelope(api: BackgroundApi) -> None:
    service = live_service(api)
    _ok(service.create_domain_v2(SEED_DOMAINS))
    _ok(service.create_relay_source_v4(SEED_CREATE_V4))
    with pytest.raises(Exception) as info:
        service.create_relay_source_v4(SEED_CREATE_V4)  # duplicate
    assert _sdk_error(info.value)["Code"] == "InvalidParam"
    with pytest.raises(Exception) as info:
        service.list_relay_source_v4({"Domain": "push.example.com", "Size": 501})
    assert _sdk_error(info.value)["Code"] == "InvalidParam.OutOfRange"
    with pytest.raises(Exception) as info:
        service.update_relay_source_v3({**SEED_UPDATE_V3, "Vhost": "unknown.example.com"})
    assert _sdk_error(info.value)["Code"] == "RequestForbidden"

    wrong = live_service(api, sk="not-the-secret")
    with pytest.raises(Exception) as info:
        wrong.list_relay_source_v4(SEED_LIST_V4)
    assert _sdk_error(info.value)["Code"] == "SignatureDoesNotMatch"
    stranger = live_service(api, ak="AKLTstranger", sk=TEST_SK)
    with pytest.raises(Exception) as info:
        stranger.list_relay_source_v4(SEED_LIST_V4)
    assert _sdk_error(info.value) == {
        "Code": "InvalidAccessKey",
        "CodeN": 100009,
        "Message": "The accesskey [AKLTstranger] included in the request is invalid.",
    }


def test_sts_session_token_is_signed_and_accepted(api: BackgroundApi) -> None:
    service = live_service(api)
    service.set_session_token("STStesttoken123")
    try:
        _ok(service.create_domain_v2(SEED_DOMAINS))
        assert _ok(service.list_relay_source_v4(SEED_LIST_V4))["List"] == []
    finally:
        # The SDK's default; None would leak into later tests (the credentials are module-global).
        service.set_session_token("")
