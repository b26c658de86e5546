"""Signature vectors of spec B.3 (sign and verify) and the gateway's answer to each way
a signature can be wrong."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from tests.conftest import TEST_AK, TEST_SK

from liverelay.api.auth import authenticate
from liverelay.api.signing import (
    canonical_request,
    parse_authorization,
    sha256_hex,
    sign_request,
    signing_key,
    verify_signature,
)
from liverelay.api.testing import BackgroundApi, api_settings, signed_post
from liverelay.store import AccessKey

V1_BODY = (
    b'{"Domain": "pull.example.com", "App": "live", "Stream": "example_stream", '
    b'"SrcAddrS": ["rtmp://live.example.com"], "StartTime": 1683518058, "EndTime": 1683777258}'
)
V4_BODY = b'{"Vhost": "push.example.com", "App": "live"}'
JAN1 = datetime(2024, 1, 1, tzinfo=UTC)
DEC31 = datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)


def sig_of(authorization: str) -> str:
    return authorization.rsplit("Signature=", 1)[1]


@dataclass(frozen=True)
class Vector:
    host: str
    action: str
    body: bytes
    when: datetime
    token: str | None
    signature: str  # expected
    canonical_hash: str | None  # expected hash of the canonical request, where the spec gives one

    def sign(self) -> dict[str, str]:
        """Sign the vector with the test key pair; the signature must be the expected one."""
        headers = sign_request(
            method="POST",
            host=self.host,
            path="/",
            query=_query(self.action),
            body=self.body,
            access_key=TEST_AK,
            secret_key=TEST_SK,
            session_token=self.token,
            when=self.when,
        )
        assert sig_of(headers["Authorization"]) == self.signature
        return headers


# fmt: off
VECTORS = [
    pytest.param(Vector(
        "live.volcengineapi.com", "CreateRelaySourceV4", V1_BODY, JAN1, None,
        "b1ecf3a10de4d4c1091ce4dd91b5ff3f0c14356f92c0b6ab0e82ee20a513766e",
        "46e0a0826d052ce4a2cf05ee83d404df05ba749675ea0a02eba96570929b70f9",
    ), id="v1"),
    pytest.param(Vector(
        "live.volcengineapi.com:443", "CreateRelaySourceV4", V1_BODY, JAN1, None,
        "b1ecf3a10de4d4c1091ce4dd91b5ff3f0c14356f92c0b6ab0e82ee20a513766e", None,
    ), id="v1-port443"),
    pytest.param(Vector(
        "127.0.0.1:8080", "CreateRelaySourceV4", V1_BODY, JAN1, None,
        "0f6ba11d31d7408f284a2415f9bd277db1dfcc86cb19c37380f10c5316128ab7",
        "8d4fdd9ae74e3c2e29784d88b38966358f6063cf3e1fb7e9751ea913da83ba42",
    ), id="v2"),
    pytest.param(Vector(
        "127.0.0.1:18080", "CreateRelaySourceV4", V1_BODY, JAN1, None,
        "88458a1ac8961e68099e8da3312c94b1353d36aeb29f7d365850192813fd783a", None,
    ), id="v2-sdk-capture"),
    pytest.param(Vector(
        "live.volcengineapi.com", "CreateRelaySourceV4", V1_BODY, JAN1, "STStesttoken123",
        "3eca873ce6c481744a3db1b19300a0ce877e39428cd8abae1d4e4db1483985de",
        "ecada7d25b93253034575e6d2878abdd3d429e7c5aad707f4bec88865331c64b",
    ), id="v3-sts"),
    pytest.param(Vector(
        "localhost:8080", "DescribeRelaySourceV3", V4_BODY, DEC31, None,
        "dfc54132db630466daa874eb99128a7145f0fa3eb2552889f038bbfc6a2ebe29", None,
    ), id="v4"),
]
# fmt: on


def _query(action: str) -> list[tuple[str, str]]:
    return [("Action", action), ("Version", "2023-01-01")]


def test_body_hashes_and_key_chain() -> None:
    assert sha256_hex(V1_BODY) == "120ce151eee7608c90b9237739a704d0eb09507000b26824fb6be5f44a2e4e23"
    assert sha256_hex(V4_BODY) == "07f811564fe04655c557d544ca31cce14acad3d74cdf1ab1cf26dc737241417c"
    assert signing_key(TEST_SK, "20240101", "cn-north-1", "live").hex() == (
        "38caa5827f890bfb4ec0d9b980f4b395eb53265e8a8d9886fb421f7b159beca2"
    )


@pytest.mark.parametrize("vector", VECTORS)
def test_vector_signs_and_verifies(vector: Vector) -> None:
    headers = vector.sign()
    action, body, when, token = vector.action, vector.body, vector.when, vector.token
    parsed = parse_authorization(headers["Authorization"])
    assert parsed.access_key == TEST_AK
    assert parsed.short_date == when.strftime("%Y%m%d")
    expected_signed = ["content-type", "host", "x-content-sha256", "x-date"]
    if token:
        expected_signed.append("x-security-token")
    assert parsed.signed_headers == expected_signed
    lower = {k.lower(): v for k, v in headers.items()}
    if vector.canonical_hash is not None:
        canonical = canonical_request(
            "POST", "/", _query(action), lower, parsed.signed_headers, sha256_hex(body)
        )
        assert sha256_hex(canonical.encode()) == vector.canonical_hash
    verify = functools.partial(
        verify_signature,
        parsed,
        secret_key=TEST_SK,
        method="POST",
        path="/",
        query=_query(action),
        headers=lower,
    )
    assert verify(body=body)
    assert not verify(body=body[:-1] + b"]")  # one changed body byte fails verification


@pytest.mark.parametrize("vector", VECTORS)
def test_vector_passes_the_gateway_check(vector: Vector) -> None:
    """The exact vector headers are accepted by the server-side authenticate() at that date."""
    headers = vector.sign()

    async def lookup(ak: str) -> AccessKey | None:
        return AccessKey(TEST_AK, TEST_SK, 0) if ak == TEST_AK else None

    ak = asyncio.run(
        authenticate(
            method="POST",
            path="/",
            query=_query(vector.action),
            headers={k.lower(): v for k, v in headers.items()},
            body=vector.body,
            lookup_key=lookup,
            region="cn-north-1",
            service="live",
            max_skew_s=900,
            now=vector.when + timedelta(seconds=30),
        )
    )
    assert ak == TEST_AK


# ---- through the real gateway on a socket ----


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundApi]:
    data: Path = tmp_path_factory.mktemp("signing-api")
    with BackgroundApi(
        api_settings(data, rate_limit_per_s=1000, rate_burst=1000), keys=[(TEST_AK, TEST_SK)]
    ) as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


BODY = b'{"Domain": "nowhere.example.com", "Page": 1, "Size": 20}'


def _send(
    client: httpx.Client,
    api: BackgroundApi,
    headers: dict[str, str],
    body: bytes = BODY,
    action: str = "ListRelaySourceV4",
) -> httpx.Response:
    return client.post(api.url, params=_query(action), content=body, headers=headers)


def _signed(
    api: BackgroundApi, body: bytes = BODY, action: str = "ListRelaySourceV4", **kw: object
) -> dict[str, str]:
    ak = str(kw.pop("access_key", TEST_AK))
    sk = str(kw.pop("secret_key", TEST_SK))
    return sign_request(
        method="POST",
        host=api.host,
        path="/",
        query=_query(action),
        body=body,
        access_key=ak,
        secret_key=sk,
        **kw,  # type: ignore[arg-type]
    )


def _code(resp: httpx.Response) -> str:
    return resp.json()["ResponseMetadata"]["Error"]["Code"]


def test_well_signed_request_reaches_the_action(api: BackgroundApi, client: httpx.Client) -> None:
    resp = _send(client, api, _signed(api))
    # The gateway let it through: the action itself answers (no such domain).
    assert resp.status_code == 403 and _code(resp) == "RequestForbidden"


def test_sts_token_request_is_accepted(api: BackgroundApi, client: httpx.Client) -> None:
    resp = _send(client, api, _signed(api, session_token="STStesttoken123"))
    assert _code(resp) == "RequestForbidden"


def test_changed_body_byte(api: BackgroundApi, client: httpx.Client) -> None:
    headers = _signed(api)
    resp = _send(client, api, headers, body=BODY.replace(b"20", b"21"))
    assert resp.status_code == 401 and _code(resp) == "SignatureDoesNotMatch"
    # Same with a consistent X-Content-Sha256: the signature still covers the hash.
    headers["X-Content-Sha256"] = sha256_hex(BODY.replace(b"20", b"21"))
    resp = _send(client, api, headers, body=BODY.replace(b"20", b"21"))
    assert resp.status_code == 401 and _code(resp) == "SignatureDoesNotMatch"


def test_changed_signed_header(api: BackgroundApi, client: httpx.Client) -> None:
    headers = _signed(api)
    headers["Content-Type"] = "application/json; charset=utf-8"
    resp = _send(client, api, headers)
    assert resp.status_code == 401 and _code(resp) == "SignatureDoesNotMatch"


def test_changed_query(api: BackgroundApi, client: httpx.Client) -> None:
    headers = _signed(api, action="ListRelaySourceV4")
    resp = _send(client, api, headers, action="DescribeRelaySourceV3")
    assert resp.status_code == 401 and _code(resp) == "SignatureDoesNotMatch"


def test_wrong_secret(api: BackgroundApi, client: httpx.Client) -> None:
    resp = _send(client, api, _signed(api, secret_key=TEST_SK + "x"))
    assert resp.status_code == 401 and _code(resp) == "SignatureDoesNotMatch"


@pytest.mark.parametrize("offset_s", [-3600, 3600, -901, 901])
def test_date_outside_window(api: BackgroundApi, client: httpx.Client, offset_s: int) -> None:
    # From the next whole second: X-Date carries whole seconds, so "now + 901 s" truncated
    # would be 900.x s ahead and, by the time the node checks it, inside the 900 s window.
    whole_second = datetime.fromtimestamp(math.ceil(time.time()), UTC)
    resp = _send(client, api, _signed(api, when=whole_second + timedelta(seconds=offset_s)))
    assert resp.status_code == 400 and _code(resp) == "InvalidTimestamp"


def test_date_inside_window(api: BackgroundApi, client: httpx.Client) -> None:
    resp = _send(client, api, _signed(api, when=datetime.now(UTC) - timedelta(seconds=600)))
    assert _code(resp) == "RequestForbidden"


def test_unknown_key(api: BackgroundApi, client: httpx.Client) -> None:
    resp = _send(client, api, _signed(api, access_key="AKLTnobody"))
    assert resp.status_code == 401 and _code(resp) == "InvalidAccessKey"


def test_wrong_service(api: BackgroundApi, client: httpx.Client) -> None:
    resp = _send(client, api, _signed(api, service="vod"))
    assert resp.status_code == 404 and _code(resp) == "ServiceNotFound"


def test_wrong_region(api: BackgroundApi, client: httpx.Client) -> None:
    resp = _send(client, api, _signed(api, region="ap-singapore-1"))
    assert resp.status_code == 400 and _code(resp) == "InvalidCredential"


def test_scope_date_differs_from_x_date(api: BackgroundApi, client: httpx.Client) -> None:
    headers = _signed(api)
    today = headers["X-Date"][:8]
    yesterday = (datetime.strptime(today, "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
    headers["Authorization"] = headers["Authorization"].replace(f"/{today}/", f"/{yesterday}/")
    resp = _send(client, api, headers)
    assert resp.status_code == 400 and _code(resp) == "InvalidCredential"


def test_missing_authorization(api: BackgroundApi, client: httpx.Client) -> None:
    headers = _signed(api)
    del headers["Authorization"]
    resp = _send(client, api, headers)
    assert resp.status_code == 401 and _code(resp) == "MissingAuthenticationToken"


def test_missing_signature(api: BackgroundApi, client: httpx.Client) -> None:
    headers = _signed(api)
    headers["Authorization"] = headers["Authorization"].rsplit(", Signature=", 1)[0]
    resp = _send(client, api, headers)
    assert resp.status_code == 401 and _code(resp) == "MissingSignature"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("Basic dXNlcjpwYXNz", "InvalidAuthorization"),
        (
            "HMAC-SHA256 Credential=AKLTx/20240101/cn-north-1, SignedHeaders=host;x-date, Signature=00",
            "InvalidCredential",
        ),
        (
            "HMAC-SHA256 Credential=AKLTx/20240101/cn-north-1/live/request, Signature=00",
            "InvalidAuthorization",
        ),
    ],
)
def test_unparsable_authorization(
    api: BackgroundApi, client: httpx.Client, authorization: str, code: str
) -> None:
    headers = _signed(api)
    headers["Authorization"] = authorization
    resp = _send(client, api, headers)
    assert resp.status_code == 400 and _code(resp) == code


def test_host_and_x_date_must_be_signed(api: BackgroundApi, client: httpx.Client) -> None:
    headers = _signed(api)
    headers["Authorization"] = headers["Authorization"].replace(
        "SignedHeaders=content-type;host;x-content-sha256;x-date",
        "SignedHeaders=content-type;x-content-sha256;x-date",
    )
    resp = _send(client, api, headers)
    assert resp.status_code == 400 and _code(resp) == "InvalidAuthorization"


def test_error_envelope_shape(api: BackgroundApi, client: httpx.Client) -> None:
    resp = signed_post(
        client,
        api.host,
        "ListRelaySourceV4",
        {"Domain": "x.example.com"},
        access_key="AKLTnobody",
        secret_key="x",
    )
    meta = resp.json()["ResponseMetadata"]
    assert resp.headers["content-type"].startswith("application/json")
    assert meta["Action"] == "ListRelaySourceV4" and meta["Version"] == "2023-01-01"
    assert meta["Service"] == "live" and meta["Region"] == "cn-north-1"
    assert meta["Error"]["CodeN"] == 100009 and meta["Error"]["Message"]
    assert "Result" not in resp.json()
    assert len(meta["RequestId"]) >= 30 and meta["RequestId"][:8].isdigit()
    json.dumps(meta)
