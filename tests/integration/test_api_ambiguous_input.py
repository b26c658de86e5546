"""Issue 8 item 7 (API): huge numbers are bounded and never echoed; a parameter or a JSON
key given twice is refused instead of silently resolved. Against the real API app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TEST_AK, TEST_SK

from liverelay.api.signing import sign_request
from liverelay.api.testing import SEED_DOMAINS, BackgroundApi, SignedClient, api_settings
from liverelay.schemas.fields import MAX_PAGE

HUGE = "9" * 401
SHORT_MESSAGE = 200  # an error message names the field and the rule, nothing more


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedClient]:
    data: Path = tmp_path_factory.mktemp("ambiguous")
    settings = api_settings(data, rate_limit_per_s=1000, rate_burst=1000)
    with (
        BackgroundApi(settings, keys=[(TEST_AK, TEST_SK)]) as server,
        SignedClient(server.host, TEST_AK, TEST_SK) as c,
    ):
        c.ok("CreateDomainV2", SEED_DOMAINS)
        yield c


def _error(resp: Any) -> tuple[int, str, str]:
    err = resp.json()["ResponseMetadata"]["Error"]
    return resp.status_code, err["Code"], err["Message"]


def _raw(template: str) -> bytes:
    """JSON text with a number literal too long for json.dumps of an int to be convenient."""
    return template.replace("HUGE", HUGE).encode()


@pytest.mark.parametrize(
    ("action", "body", "code", "field"),
    [
        (
            "ListRelaySourceV4",
            '{"Domain": "pull.example.com", "Page": HUGE}',
            "InvalidParam.OutOfRange",
            "Page",
        ),
        (
            "ListRelaySourceV4",
            '{"Domain": "pull.example.com", "Size": HUGE}',
            "InvalidParam.OutOfRange",
            "Size",
        ),
        (
            "ListRelaySourceV4",
            '{"Domain": "pull.example.com", "Page": -HUGE}',
            "InvalidParam.OutOfRange",
            "Page",
        ),
        ("ListDomainDetail", '{"PageNum": HUGE, "PageSize": 10}', "InvalidParam.OutOfRange", "PageNum"),
        ("ListDomainDetail", '{"PageNum": 1, "PageSize": HUGE}', "InvalidParam.OutOfRange", "PageSize"),
        (
            "CreateRelaySourceV4",
            '{"Domain": "pull.example.com", "App": "live", "Stream": "h", "SrcAddrS": ["rtmp://o.example.org/l/s"],'
            ' "StartTime": HUGE, "EndTime": 1683777258}',
            "InvalidParam",
            "StartTime",
        ),
    ],
    ids=["page", "size", "negative-page", "pagenum", "pagesize", "starttime"],
)
def test_huge_numbers_are_refused_without_echo(
    client: SignedClient, action: str, body: str, code: str, field: str
) -> None:
    resp = client.post(action, _raw(body))
    status, got_code, message = _error(resp)
    assert (status, got_code) == (400, code), resp.text
    assert message.startswith(field) and len(message) < SHORT_MESSAGE, message
    assert "9" * 20 not in resp.text  # the number is not echoed anywhere in the answer


def test_page_bound_is_inclusive(client: SignedClient) -> None:
    result = client.ok("ListRelaySourceV4", {"Domain": "pull.example.com", "Page": MAX_PAGE, "Size": 500})
    assert result["List"] == [] and result["Pagination"]["PageCur"] == MAX_PAGE
    resp = client.post("ListRelaySourceV4", {"Domain": "pull.example.com", "Page": MAX_PAGE + 1})
    assert _error(resp)[:2] == (400, "InvalidParam.OutOfRange")


def _post_query(client: SignedClient, query: list[tuple[str, str]], body: bytes = b"{}") -> Any:
    """A correctly signed request with exactly this query (repeated names included)."""
    headers = sign_request(
        method="POST",
        host=client.host,
        path="/",
        query=query,
        body=body,
        access_key=TEST_AK,
        secret_key=TEST_SK,
    )
    return client.http.post(f"http://{client.host}/", params=query, content=body, headers=headers)


@pytest.mark.parametrize(
    "query",
    [
        [("Action", "ListRelaySourceV4"), ("Action", "DeleteRelaySourceV4"), ("Version", "2023-01-01")],
        [("Action", "ListRelaySourceV4"), ("Action", "ListRelaySourceV4"), ("Version", "2023-01-01")],
        [("Action", "ListRelaySourceV4"), ("Version", "2023-01-01"), ("Version", "2020-01-01")],
    ],
    ids=["two-actions", "same-action-twice", "two-versions"],
)
def test_repeated_action_or_version_is_refused(client: SignedClient, query: list[tuple[str, str]]) -> None:
    resp = _post_query(client, query, json.dumps({"Domain": "pull.example.com"}).encode())
    status, code, message = _error(resp)
    assert (status, code) == (400, "InvalidParam"), resp.text
    assert "more than once" in message
    assert "Result" not in resp.json()
    # Control: the same request with each parameter once (its first value) is answered.
    single = [(name, value) for i, (name, value) in enumerate(query) if name not in dict(query[:i])]
    assert _post_query(client, single, json.dumps({"Domain": "pull.example.com"}).encode()).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b'{"Domain": "pull.example.com", "App": "live", "Stream": "d1", "Stream": "d2",'
        b' "SrcAddrS": ["rtmp://o.example.org/l/s"]}',
        b'{"Domain": "pull.example.com", "App": "live", "Stream": "d1", "SrcAddrS": ["rtmp://o.example.org/l/s"],'
        b' "Domain": "push.example.com"}',
        b'{"Domain": "pull.example.com", "App": "live", "Stream": "d1", "SrcAddrS": ["rtmp://o.example.org/l/s"],'
        b' "Extra": {"k": 1, "k": 2}}',
    ],
    ids=["top-level", "top-level-after-others", "nested-unknown-field"],
)
def test_duplicate_json_keys_are_refused(client: SignedClient, raw: bytes) -> None:
    resp = client.post("CreateRelaySourceV4", raw)
    status, code, message = _error(resp)
    assert (status, code) == (400, "InvalidParam.BindError"), resp.text
    assert "appears twice" in message
    listed = client.ok("ListRelaySourceV4", {"Domain": "pull.example.com"})["List"]
    assert [r["Stream"] for r in listed] == []  # nothing was created from the ambiguous body


def test_duplicate_key_name_is_truncated(client: SignedClient) -> None:
    key = "k" * 100_000
    raw = json.dumps({"Domain": "pull.example.com"})[:-1] + f', "{key}": 1, "{key}": 2}}'
    resp = client.post("ListRelaySourceV4", raw.encode())
    status, code, message = _error(resp)
    assert (status, code) == (400, "InvalidParam.BindError") and len(message) < SHORT_MESSAGE


def test_long_object_key_is_not_echoed(client: SignedClient) -> None:
    """A field location can hold a user's key (RelaySourceParams): the message keeps it short."""
    server = {
        "RelaySourceProtocol": "rtmp",
        "RelaySourceDomain": "o.example.org",
        "RelaySourceParams": {"p" * 50_000: 1},
    }
    body = {"Vhost": "push.example.com", "App": "live", "GroupDetails": [{"Group": "g", "Servers": [server]}]}
    status, code, message = _error(client.post("UpdateRelaySourceV3", body))
    assert (status, code) == (400, "InvalidParam.BindError")
    assert "GroupDetails[0].Servers[0].RelaySourceParams" in message and len(message) < SHORT_MESSAGE
