"""Gateway behaviour that is not about signatures: methods, Action/Version, paths,
body cap, per-key throttling, request ids."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from liverelay.api.testing import SEED_DOMAINS, BackgroundApi, SignedClient, api_settings

AK = "AKLTtestaccesskeyid00000000"
SK = "dGVzdHNlY3JldGFjY2Vzc2tleTAwMDAwMDAwMDAwMA=="
AK2 = "AKLTsecondkey000000000000000000000000000000"
SK2 = "second-secret-0000000000000000000000000000000"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[BackgroundApi]:
    with BackgroundApi(api_settings(tmp_path, rate_limit_per_s=1000, rate_burst=1000), keys=[(AK, SK)]) as s:
        yield s


def _error(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()["ResponseMetadata"]["Error"]["Code"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_non_post_is_405(api: BackgroundApi, method: str) -> None:
    resp = httpx.request(method, api.url, params={"Action": "ListRelaySourceV4", "Version": "2023-01-01"})
    assert _error(resp) == (405, "MethodNotAllowed")
    assert resp.json()["ResponseMetadata"]["Action"] == "ListRelaySourceV4"


def test_missing_action_or_version(api: BackgroundApi) -> None:
    assert _error(httpx.post(api.url, params={"Version": "2023-01-01"}, content=b"{}")) == (
        400,
        "MissingParameter",
    )
    assert _error(httpx.post(api.url, params={"Action": "ListRelaySourceV4"}, content=b"{}")) == (
        400,
        "MissingParameter",
    )


def test_unknown_action_version_or_path(api: BackgroundApi) -> None:
    with SignedClient(api.host, AK, SK) as c:
        assert _error(c.post("GetUserById", {})) == (404, "InvalidActionOrVersion")
        assert _error(c.post("ListRelaySourceV4", {}, version="2018-01-01")) == (
            404,
            "InvalidActionOrVersion",
        )
        resp = c.post("ListRelaySourceV4", {"Domain": "x"}, version="2023-01-01")
        assert resp.status_code != 404  # control: the real action exists
    # Unsigned: auth comes before the action lookup, so nothing is revealed about actions.
    resp = httpx.post(api.url, params={"Action": "GetUserById", "Version": "2023-01-01"}, content=b"{}")
    assert _error(resp) == (401, "MissingAuthenticationToken")


def test_other_paths_answer_with_an_envelope(api: BackgroundApi) -> None:
    resp = httpx.post(api.url + "admin", params={"Action": "ListRelaySourceV4", "Version": "2023-01-01"})
    assert resp.status_code in (401, 404) and "Error" in resp.json()["ResponseMetadata"]


def test_declared_oversized_body_is_refused_before_reading(tmp_path: Path) -> None:
    with BackgroundApi(api_settings(tmp_path, max_body_bytes=1000), keys=[(AK, SK)]) as api:
        with SignedClient(api.host, AK, SK) as c:
            assert _error(c.post("ListRelaySourceV4", b"{" + b" " * 1000 + b"}")) == (
                413,
                "RequestEntityTooLarge",
            )
            body = b'{"Domain": "x.example.com"' + b" " * (1000 - 27) + b"}"
            assert len(body) == 1000
            assert _error(c.post("ListRelaySourceV4", body)) == (
                403,
                "RequestForbidden",
            )  # exactly at the cap

        # Chunked upload without Content-Length is capped while streaming.
        def chunks() -> Iterator[bytes]:
            for _ in range(100):
                yield b" " * 100

        resp = httpx.post(
            api.url, params={"Action": "ListRelaySourceV4", "Version": "2023-01-01"}, content=chunks()
        )
        assert _error(resp) == (413, "RequestEntityTooLarge")


def test_throttling_is_per_access_key(tmp_path: Path) -> None:
    # 0.01 tokens/s: the burst is all a key gets during this test.
    settings = api_settings(tmp_path, rate_limit_per_s=0.01, rate_burst=3)
    with (
        BackgroundApi(settings, keys=[(AK, SK), (AK2, SK2)]) as api,
        SignedClient(api.host, AK, SK) as c1,
        SignedClient(api.host, AK2, SK2) as c2,
    ):
        bad = SignedClient(api.host, AK, "wrong-secret")
        # Requests that fail authentication do not spend the key's tokens.
        for _ in range(5):
            assert _error(bad.post("ListDomainDetail", {})) == (401, "SignatureDoesNotMatch")
        bad.close()
        codes = [c1.post("ListDomainDetail", {"PageNum": 1, "PageSize": 10}).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        resp = c1.post("ListDomainDetail", {"PageNum": 1, "PageSize": 10})
        assert _error(resp) == (429, "AccountFlowLimitExceeded")
        assert resp.headers["Retry-After"] == "1"
        # Another key has its own bucket.
        assert c2.post("ListDomainDetail", {"PageNum": 1, "PageSize": 10}).status_code == 200


def test_request_ids_are_unique_and_errors_never_200(api: BackgroundApi) -> None:
    ids = set()
    with SignedClient(api.host, AK, SK) as c:
        c.ok("CreateDomainV2", SEED_DOMAINS)
        for i in range(60):
            body = {"Domain": "pull.example.com"} if i % 2 else {"Domain": 5}
            resp = c.post("ListRelaySourceV4", body)
            meta = resp.json()["ResponseMetadata"]
            assert (resp.status_code == 200) == ("Error" not in meta)
            ids.add(meta["RequestId"])
    assert len(ids) == 60


def test_key_deleted_while_running_is_refused(api: BackgroundApi) -> None:
    with SignedClient(api.host, AK2, SK2) as c:
        assert _error(c.post("ListDomainDetail", {})) == (401, "InvalidAccessKey")
        api.call(api.store.ensure_key(AK2, SK2))
        assert c.post("ListDomainDetail", {"PageNum": 1, "PageSize": 1}).status_code == 200
        api.call(api.store.delete_key(AK2))
        assert _error(c.post("ListDomainDetail", {})) == (401, "InvalidAccessKey")


def test_token_bucket_refills_with_time() -> None:
    from liverelay.api.throttle import RateLimiter

    now = [100.0]
    limiter = RateLimiter(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert [limiter.allow("k") for _ in range(3)] == [True, True, False]
    now[0] += 0.5  # one token back
    assert [limiter.allow("k") for _ in range(2)] == [True, False]
    now[0] += 60  # refills to the burst, not beyond
    assert [limiter.allow("k") for _ in range(3)] == [True, True, False]
    assert limiter.allow("other")
    now[0] += 3600  # idle buckets are forgotten
    limiter.allow("k")
    assert set(limiter._buckets) == {"k"}
    assert RateLimiter(rate_per_s=0, burst=1).allow("k")  # 0 disables throttling
