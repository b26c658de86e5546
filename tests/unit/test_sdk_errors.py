"""Error envelopes -> exception classes, and the retry policy's decisions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liverelay.sdk import (
    AuthError,
    ForbiddenError,
    InvalidParamError,
    LiveAPIError,
    LiveConnectionError,
    NotFoundError,
    RetryPolicy,
    ServerError,
    ThrottledError,
    error_from_response,
    is_idempotent,
)


def envelope(code: str, message: str = "m", request_id: str = "rid-1", code_n: int | None = None) -> bytes:
    error: dict[str, object] = {"Code": code, "Message": message}
    if code_n is not None:
        error["CodeN"] = code_n
    meta = {"RequestId": request_id, "Action": "A", "Version": "2023-01-01", "Error": error}
    return json.dumps({"ResponseMetadata": meta}).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (401, "MissingAuthenticationToken", AuthError),
        (401, "InvalidAccessKey", AuthError),
        (401, "SignatureDoesNotMatch", AuthError),
        (400, "InvalidTimestamp", AuthError),
        (400, "InvalidAuthorization", AuthError),
        (403, "InvalidTimestamp", AuthError),
        (429, "AccountFlowLimitExceeded", ThrottledError),
        (429, "Whatever", ThrottledError),
        (400, "InvalidParam", InvalidParamError),
        (400, "InvalidParam.BindError", InvalidParamError),
        (400, "InvalidParam.OutOfRange", InvalidParamError),
        (400, "MissingParameter", InvalidParamError),
        (403, "RequestForbidden", ForbiddenError),
        (403, "RequestForbidden.AccountIDNotAllow", ForbiddenError),
        (403, "AccessDenied", ForbiddenError),
        (404, "InvalidActionOrVersion", NotFoundError),
        (404, "ServiceNotFound", NotFoundError),
        (500, "InternalError", ServerError),
        (502, "FailToConnect", ServerError),
        (503, "ServiceUnavailableTemp", ServerError),
        (504, "InternalServiceTimeout", ServerError),
        (405, "MethodNotAllowed", LiveAPIError),
        (200, "CommonErr", LiveAPIError),
    ],
)
def test_envelope_maps_to_class(status: int, code: str, cls: type[LiveAPIError]) -> None:
    error = error_from_response(status, envelope(code, "boom", "r-42", 100010), action="ListRelaySourceV4")
    assert type(error) is cls
    assert (error.code, error.message, error.request_id, error.http_status) == (code, "boom", "r-42", status)
    assert error.action == "ListRelaySourceV4"
    assert error.code_n == 100010
    assert str(error) == f"{code}: boom (r-42)"


def test_success_is_not_an_error() -> None:
    ok = json.dumps({"ResponseMetadata": {"RequestId": "x"}, "Result": {}}).encode()
    assert error_from_response(200, ok) is None
    assert error_from_response(204, b"{}") is None


@pytest.mark.parametrize(
    ("status", "content", "cls", "code"),
    [
        (502, b"<html>Bad Gateway</html>", ServerError, "HTTP502"),
        (500, b"", ServerError, "HTTP500"),
        (429, b"slow down", ThrottledError, "HTTP429"),
        (401, b"{}", AuthError, "HTTP401"),
        (200, b"not json", LiveAPIError, "InvalidResponse"),
        (200, b"[1, 2]", LiveAPIError, "InvalidResponse"),
        (200, b"", LiveAPIError, "InvalidResponse"),
    ],
)
def test_bodies_that_are_not_envelopes(status: int, content: bytes, cls: type, code: str) -> None:
    error = error_from_response(status, content)
    assert type(error) is cls
    assert error.code == code


def test_retry_after_header_is_kept() -> None:
    error = error_from_response(429, envelope("AccountFlowLimitExceeded"), retry_after="1.5")
    assert isinstance(error, ThrottledError)
    assert error.retry_after == 1.5
    assert error_from_response(429, envelope("X"), retry_after="soon").retry_after is None


@given(status=st.integers(100, 599), content=st.binary(max_size=300))
def test_any_response_maps_without_crashing(status: int, content: bytes) -> None:
    error = error_from_response(status, content)
    if not 200 <= status < 300:
        assert isinstance(error, LiveAPIError)
        assert error.http_status == status


def test_idempotency() -> None:
    assert not is_idempotent("CreateRelaySourceV4")
    assert not is_idempotent("CreateDomainV2")
    for action in ("UpdateRelaySourceV3", "DeleteRelaySourceV4", "ListRelaySourceV4", "DescribeRelayStatus"):
        assert is_idempotent(action)


def test_retry_decisions() -> None:
    policy = RetryPolicy(max_retries=2)
    throttled = ThrottledError("AccountFlowLimitExceeded", "", "", 429)
    internal = ServerError("InternalError", "", "", 500)
    unavailable = ServerError("ServiceUnavailableTemp", "", "", 503)
    lost = LiveConnectionError("read timeout", sent=True)
    refused = LiveConnectionError("refused", sent=False)
    bad = InvalidParamError("InvalidParam", "", "", 400)
    for action in ("CreateRelaySourceV4", "UpdateRelaySourceV4"):
        assert policy.should_retry(action, 0, throttled)
        assert policy.should_retry(action, 0, unavailable)
        assert policy.should_retry(action, 0, refused)
        assert not policy.should_retry(action, 0, bad)
        assert not policy.should_retry(action, 2, throttled)  # out of retries
    assert policy.should_retry("UpdateRelaySourceV4", 1, internal)
    assert policy.should_retry("UpdateRelaySourceV4", 1, lost)
    assert not policy.should_retry("CreateRelaySourceV4", 0, internal)
    assert not policy.should_retry("CreateRelaySourceV4", 0, lost)


@given(attempt=st.integers(0, 40), retry_after=st.none() | st.floats(0, 100))
def test_backoff_is_capped_exponential_with_jitter(attempt: int, retry_after: float | None) -> None:
    policy = RetryPolicy(backoff_base=0.1, backoff_max=2.0)
    ceiling = min(2.0, 0.1 * 2**attempt)
    delay = policy.delay(attempt, retry_after)
    assert delay <= 2.0
    assert delay >= ceiling / 2
    if retry_after is None:
        assert delay <= ceiling
    else:
        assert delay >= min(retry_after, 2.0)
