"""The SDK signs exactly what the official SDK would: spec B.3 vectors, and a
cross-check against the official SignerV4 itself on arbitrary bodies."""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import TEST_AK, TEST_SK

from liverelay.sdk import AsyncLiveService, LiveService

V4_BODY = {
    "Domain": "pull.example.com",
    "App": "live",
    "Stream": "example_stream",
    "SrcAddrS": ["rtmp://live.example.com"],
    "StartTime": 1683518058,
    "EndTime": 1683777258,
}
V4_BODY_SHA256 = "120ce151eee7608c90b9237739a704d0eb09507000b26824fb6be5f44a2e4e23"
SIGNED = "SignedHeaders=content-type;host;x-content-sha256;x-date"


def pinned(x_date: str) -> datetime:
    return datetime.strptime(x_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def service(host: str, when: str = "20240101T000000Z", **kwargs: Any) -> LiveService:
    return LiveService(host, TEST_AK, TEST_SK, clock=lambda: pinned(when), **kwargs)


@pytest.mark.parametrize(
    ("host", "signature"),
    [
        ("live.volcengineapi.com", "b1ecf3a10de4d4c1091ce4dd91b5ff3f0c14356f92c0b6ab0e82ee20a513766e"),
        ("live.volcengineapi.com:443", "b1ecf3a10de4d4c1091ce4dd91b5ff3f0c14356f92c0b6ab0e82ee20a513766e"),
        ("127.0.0.1:8080", "0f6ba11d31d7408f284a2415f9bd277db1dfcc86cb19c37380f10c5316128ab7"),
        ("127.0.0.1:18080", "88458a1ac8961e68099e8da3312c94b1353d36aeb29f7d365850192813fd783a"),
    ],
)
def test_vectors_1_and_2(host: str, signature: str) -> None:
    with service(host) as svc:
        prepared = svc.prepare("CreateRelaySourceV4", V4_BODY)
    assert len(prepared.content) == 162
    assert prepared.headers["X-Content-Sha256"] == V4_BODY_SHA256
    assert prepared.headers["X-Date"] == "20240101T000000Z"
    assert prepared.headers["Host"] == host
    assert prepared.headers["Content-Type"] == "application/json"
    assert prepared.headers["Authorization"] == (
        f"HMAC-SHA256 Credential={TEST_AK}/20240101/cn-north-1/live/request, {SIGNED}, Signature={signature}"
    )
    assert prepared.url.endswith(f"://{host}/?Action=CreateRelaySourceV4&Version=2023-01-01")


def test_vector_3_session_token() -> None:
    with service("live.volcengineapi.com", session_token="STStesttoken123") as svc:
        prepared = svc.prepare("CreateRelaySourceV4", V4_BODY)
    assert prepared.headers["X-Security-Token"] == "STStesttoken123"
    assert prepared.headers["Authorization"].endswith(
        "SignedHeaders=content-type;host;x-content-sha256;x-date;x-security-token, "
        "Signature=3eca873ce6c481744a3db1b19300a0ce877e39428cd8abae1d4e4db1483985de"
    )


async def test_vector_4_async_client_other_action_and_date() -> None:
    async with AsyncLiveService(
        "localhost:8080", TEST_AK, TEST_SK, clock=lambda: pinned("20231231T235959Z")
    ) as svc:
        prepared = svc.prepare("DescribeRelaySourceV3", {"Vhost": "push.example.com", "App": "live"})
    assert prepared.headers["X-Content-Sha256"] == (
        "07f811564fe04655c557d544ca31cce14acad3d74cdf1ab1cf26dc737241417c"
    )
    assert prepared.headers["Authorization"] == (
        f"HMAC-SHA256 Credential={TEST_AK}/20231231/cn-north-1/live/request, {SIGNED}, "
        "Signature=dfc54132db630466daa874eb99128a7145f0fa3eb2552889f038bbfc6a2ebe29"
    )


def test_body_bytes_are_the_official_serialisation() -> None:
    body = {"App": "直播", "Stream": "s", "N": 1, "F": [1, 2], "M": {"k": "v"}}
    with service("h") as svc:
        assert svc.prepare("X", body).content == json.dumps(body).encode()
        assert b"\\u76f4\\u64ad" in svc.prepare("X", body).content


def test_scheme_and_host_are_per_instance() -> None:
    with service("a.example.com") as one, service("b.example.com") as two:
        one.set_scheme("http")
        one.set_host("127.0.0.1:9")
        assert one.prepare("X", {}).url.startswith("http://127.0.0.1:9/?Action=X")
        assert two.prepare("X", {}).url.startswith("https://b.example.com/?Action=X")
        with pytest.raises(ValueError):
            one.set_scheme("ftp")


def test_missing_credentials_is_an_error() -> None:
    with LiveService("h", "", "") as svc, pytest.raises(ValueError):
        svc.prepare("X", {})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(
    body=st.dictionaries(st.text(min_size=1, max_size=12), json_values, max_size=6),
    action=st.sampled_from(["CreateRelaySourceV4", "ListRelaySourceV4", "UpdateRelaySourceV3"]),
    host=st.sampled_from(["live.volcengineapi.com", "127.0.0.1:8180", "[::1]:8443", "example.org:80"]),
    token=st.sampled_from(["", "STS-token/with+chars=="]),
)
def test_matches_official_signer(body: dict[str, Any], action: str, host: str, token: str) -> None:
    """Our signature equals volcengine's SignerV4 on the same request (date pinned)."""
    from volcengine.auth.SignerV4 import SignerV4
    from volcengine.base.Request import Request
    from volcengine.Credentials import Credentials

    x_date = "20240315T101112Z"
    with service(host, x_date, session_token=token or None) as svc:
        ours = svc.prepare(action, body)

    request = Request()
    request.set_method("POST")
    request.set_path("/")
    request.set_query(OrderedDict(Action=action, Version="2023-01-01"))
    request.set_host(host)
    request.set_headers({"Host": host, "Content-Type": "application/json"})
    request.set_body(json.dumps(body))
    original = SignerV4.get_current_format_date
    SignerV4.get_current_format_date = staticmethod(lambda: x_date)  # type: ignore[method-assign]
    try:
        SignerV4.sign(request, Credentials(TEST_AK, TEST_SK, "live", "cn-north-1", token))
    finally:
        SignerV4.get_current_format_date = original  # type: ignore[method-assign]
    assert ours.content == request.body.encode()
    assert ours.headers["Authorization"] == request.headers["Authorization"]
