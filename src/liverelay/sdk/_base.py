"""What the sync and async clients share: request building, signing, retry policy.

Neither client does anything on the network here; they only differ in how they
send the prepared request and how they sleep between attempts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from .. import __version__
from ..api.signing import sign_request
from ..backoff import backoff_delay
from ..schemas.streams import GET_ACTIONS
from .actions import ActionMethods
from .errors import LiveAPIError, LiveConnectionError, ServerError, ThrottledError, error_from_response

API_VERSION = "2023-01-01"
DEFAULT_HOST = "live.volcengineapi.com"
USER_AGENT = f"liverelay-sdk-python/{__version__}"


def is_idempotent(action: str) -> bool:
    """Repeating the call leaves the same state: everything but Create*.

    Update* set a whole record, Delete* of something gone is a no-op, Describe/List
    read. A Create* that reached the server may have been committed even when the
    answer was lost, and repeating it would fail with a duplicate error (or add a
    second record), so it is only retried when the server certainly did not run it.
    """
    return not action.startswith("Create")


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    url: str
    headers: dict[str, str]
    content: bytes
    method: str = "POST"


@dataclass(slots=True)
class RetryPolicy:
    """Capped exponential backoff with jitter.

    Attempt n (0-based) waits a random time in [d/2, d] with d = min(cap, base * 2**n):
    the random half spreads clients that failed together, the fixed half keeps the
    wait growing. A server's Retry-After raises the wait (still capped).
    """

    max_retries: int = 3
    backoff_base: float = 0.2
    backoff_max: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait = backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_max, jitter=0.5)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.backoff_max))
        return wait

    def should_retry(self, action: str, attempt: int, error: Exception) -> bool:
        if attempt >= self.max_retries:
            return False
        if isinstance(error, ThrottledError):
            return True  # refused before it ran: safe for every action
        if isinstance(error, LiveConnectionError):
            return is_idempotent(action) or not error.sent
        if isinstance(error, ServerError):
            # 503 = not taken in; other 5xx may have happened after a commit.
            return is_idempotent(action) or error.http_status == 503
        return False

    def wait_before_retry(
        self, action: str, attempt: int, error: LiveAPIError | LiveConnectionError
    ) -> float:
        """Seconds to sleep before attempt `attempt + 1`; re-raises `error` when it is not retried."""
        if not self.should_retry(action, attempt, error):
            raise error
        retry_after = error.retry_after if isinstance(error, LiveAPIError) else None
        return self.delay(attempt, retry_after)


class ServiceBase(ActionMethods):
    """Host, scheme, credentials and the request builder (per instance: unlike the
    official SDK, set_host/set_scheme on one client never affect another)."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        ak: str | None = None,
        sk: str | None = None,
        scheme: str = "https",
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        region: str = "cn-north-1",
        service: str = "live",
        session_token: str | None = None,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.host = host
        self.ak = ak or ""
        self.sk = sk or ""
        self.scheme = _check_scheme(scheme)
        self.timeout = timeout
        self.region = region
        self.service = service
        self.session_token = session_token
        # Source of X-Date; tests pin it to reproduce the spec's signature vectors.
        self.clock = clock or _utc_now
        self.retry = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max)
        self._open_client()

    def _open_client(self) -> None:
        """Subclasses create their HTTP client (connection pool) here."""

    # Setters with the official SDK's names.
    def set_host(self, host: str) -> None:
        self.host = host

    def set_scheme(self, scheme: str) -> None:
        self.scheme = _check_scheme(scheme)

    def set_ak(self, ak: str) -> None:
        self.ak = ak

    def set_sk(self, sk: str) -> None:
        self.sk = sk

    def set_session_token(self, token: str | None) -> None:
        self.session_token = token

    # The official SDK has separate connect/read timeouts; here one value bounds each phase.
    def set_connection_timeout(self, seconds: float) -> None:
        self.timeout = seconds

    def set_socket_timeout(self, seconds: float) -> None:
        self.timeout = seconds

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{self.host}/"

    def prepare(self, action: str, body: Mapping[str, Any] | None) -> PreparedRequest:
        """Serialise like the official SDK (json.dumps defaults) and sign those exact bytes.

        A GET action (schemas.streams.GET_ACTIONS) sends `body` as query parameters
        (numbers and booleans as text, like the official SDK) and no body."""
        if not self.ak or not self.sk:
            raise ValueError("access key id and secret are required (ak=, sk=)")
        query = [("Action", action), ("Version", API_VERSION)]
        method = "GET" if action in GET_ACTIONS else "POST"
        if method == "GET":
            query += [(k, _query_text(v)) for k, v in (body or {}).items() if v is not None]
            content = b""
        else:
            content = json.dumps(dict(body) if body is not None else {}).encode("utf-8")
        headers = sign_request(
            method=method,
            host=self.host,
            path="/",
            query=query,
            body=content,
            access_key=self.ak,
            secret_key=self.sk,
            region=self.region,
            service=self.service,
            session_token=self.session_token,
            when=self.clock(),
        )
        headers["Accept"] = "application/json"
        headers["User-Agent"] = USER_AGENT
        url = f"{self.scheme}://{self.host}/?{urlencode(query, quote_via=quote)}"
        return PreparedRequest(url, headers, content, method)

    @contextmanager
    def transport_errors(self, action: str) -> Iterator[None]:
        """Turn httpx's transport failures while sending `action` into LiveConnectionError.

        A refused or timed-out connect certainly did not reach the server (sent=False),
        which makes even a Create* safe to retry.
        """
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise LiveConnectionError(
                f"{action}: cannot connect to {self.endpoint}: {exc}", action=action, sent=False
            ) from exc
        except httpx.TransportError as exc:
            raise LiveConnectionError(
                f"{action}: {type(exc).__name__} talking to {self.endpoint}: {exc}", action=action
            ) from exc


def _query_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_response(action: str, response: httpx.Response) -> dict[str, Any]:
    """The envelope of a received response, or its typed error raised."""
    error = error_from_response(
        response.status_code,
        response.content,
        action=action,
        retry_after=response.headers.get("Retry-After"),
    )
    if error is not None:
        raise error
    return parse_success(response.content)


def parse_success(content: bytes) -> dict[str, Any]:
    """The body of a response error_from_response() accepted: always a JSON object."""
    value = json.loads(content)
    if not isinstance(value, dict):  # pragma: no cover - error_from_response rejects these
        raise LiveAPIError("InvalidResponse", "response is not a JSON object")
    return value


def list_items(response: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """(List, PageTotal) from a ListRelaySourceV4 response, tolerating missing parts."""
    result = response.get("Result") or {}
    items = result.get("List") or []
    pagination = result.get("Pagination") or {}
    try:
        page_total = int(pagination.get("PageTotal") or 0)
    except (TypeError, ValueError):
        page_total = 0
    return [dict(item) for item in items if isinstance(item, Mapping)], page_total


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check_scheme(scheme: str) -> str:
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http or https, not {scheme!r}")
    return scheme
