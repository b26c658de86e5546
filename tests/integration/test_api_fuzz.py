"""Arbitrary JSON at every action: every answer is a well-formed envelope, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liverelay.api.actions import ACTIONS
from liverelay.api.testing import SEED_DOMAINS, BackgroundApi, SignedClient, api_settings

AK = "AKLTtestaccesskeyid00000000"
SK = "dGVzdHNlY3JldGFjY2Vzc2tleTAwMDAwMDAwMDAwMA=="

FIELD_NAMES = [
    "Vhost",
    "App",
    "Stream",
    "Domain",
    "Group",
    "GroupDetails",
    "Servers",
    "RelaySourceProtocol",
    "RelaySourceDomain",
    "RelaySourceParams",
    "SrcAddrS",
    "StartTime",
    "EndTime",
    "Page",
    "Size",
    "PageNum",
    "PageSize",
    "Domains",
    "DomainName",
    "Type",
    "Region",
    "DomainList",
    "VhostList",
    "DomainStatusList",
    "x",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(
        ["live", "push.example.com", "pull.example.com", "rtmp://o.example.org/l/s", "rtmp", "1683518058"]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(FIELD_NAMES), children, max_size=5)
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=7)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedClient]:
    data: Path = tmp_path_factory.mktemp("fuzz")
    with (
        BackgroundApi(
            # Fuzzing the parsers, not the throttles: both rate limits out of the way.
            api_settings(data, rate_limit_per_s=100000, rate_burst=100000, unauth_rate_per_ip=0),
            keys=[(AK, SK)],
        ) as api,
        SignedClient(api.host, AK, SK) as c,
    ):
        c.ok("CreateDomainV2", SEED_DOMAINS)
        yield c


def _check(resp: Any, action: str) -> None:
    assert resp.status_code < 500, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    data = resp.json()
    assert isinstance(data, dict)
    meta = data["ResponseMetadata"]
    assert meta["Action"] == action and meta["Version"] == "2023-01-01" and meta["RequestId"]
    if resp.status_code == 200:
        assert "Error" not in meta
        assert isinstance(data.get("Result", {}), dict)
    else:
        assert 400 <= resp.status_code < 500
        assert isinstance(meta["Error"]["Code"], str) and isinstance(meta["Error"]["Message"], str)
        assert "Result" not in data


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.sampled_from(sorted(ACTIONS)), body=bodies)
def test_arbitrary_json_objects(client: SignedClient, action: str, body: dict[str, Any]) -> None:
    _check(client.post(action, json.dumps(body).encode()), action)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.sampled_from(sorted(ACTIONS)), body=json_values)
def test_arbitrary_json_documents(client: SignedClient, action: str, body: Any) -> None:
    _check(client.post(action, json.dumps(body).encode()), action)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.sampled_from(sorted(ACTIONS)), raw=st.binary(max_size=200))
def test_arbitrary_bytes(client: SignedClient, action: str, raw: bytes) -> None:
    _check(client.post(action, raw), action)


VALID_BODIES: dict[str, dict[str, Any]] = {
    "UpdateRelaySourceV3": {
        "Vhost": "push.example.com",
        "App": "live",
        "GroupDetails": [
            {"Group": "g", "Servers": [{"RelaySourceProtocol": "rtmp", "RelaySourceDomain": "o.example.org"}]}
        ],
    },
    "DescribeRelaySourceV3": {"Vhost": "push.example.com", "App": "live"},
    "DeleteRelaySourceV3": {"Vhost": "push.example.com", "App": "live", "Group": "g"},
    "CreateRelaySourceV4": {
        "Domain": "pull.example.com",
        "App": "live",
        "Stream": "s",
        "SrcAddrS": ["rtmp://o.example.org/l/s"],
        "StartTime": 1683518058,
        "EndTime": 1683777258,
    },
    "UpdateRelaySourceV4": {
        "Domain": "pull.example.com",
        "App": "live",
        "Stream": "s",
        "SrcAddrS": ["rtmp://o.example.org/l/s"],
    },
    "DeleteRelaySourceV4": {"Domain": "pull.example.com", "App": "live", "Stream": "s"},
    "ListRelaySourceV4": {"Domain": "push.example.com", "Page": 1, "Size": 20},
    "ListDomainDetail": {"PageNum": 1, "PageSize": 10},
    "DescribeDomain": {"DomainList": ["pull.example.com"]},
    "DescribeRelayStatus": {"Type": "fixed"},
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    action=st.sampled_from(sorted(VALID_BODIES)),
    changes=st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=2),
    drop=st.lists(st.sampled_from(FIELD_NAMES), max_size=2),
)
def test_perturbed_valid_bodies(
    client: SignedClient, action: str, changes: dict[str, Any], drop: list[str]
) -> None:
    """Valid bodies with one or two fields replaced or removed: reaches the deeper checks and the store."""
    body = {k: v for k, v in VALID_BODIES[action].items() if k not in drop}
    body.update(changes)
    _check(client.post(action, json.dumps(body).encode()), action)


def test_the_valid_bodies_are_valid(client: SignedClient) -> None:
    """Control for the test above: unperturbed, each base body succeeds."""
    # The fuzzing before may have deleted a seed domain (DeleteDomain with a seed name is a
    # valid request): put back the ones missing, each on its own.
    for domain in SEED_DOMAINS["Domains"]:
        client.post("CreateDomainV2", {"Vhost": SEED_DOMAINS["Vhost"], "Domains": [domain]})
    listed = client.ok("ListDomainDetail", {"PageNum": 1, "PageSize": 100})["DomainList"]
    assert {"push.example.com", "pull.example.com"} <= {d["Domain"] for d in listed}
    for action, body in VALID_BODIES.items():
        if action == "CreateRelaySourceV4":
            client.post("DeleteRelaySourceV4", {k: body[k] for k in ("Domain", "App", "Stream")})
        if action == "UpdateRelaySourceV4":
            client.post("CreateRelaySourceV4", body)
        resp = client.post(action, body)
        assert resp.status_code == 200, (action, resp.text)


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    authorization=st.one_of(
        header_text,
        st.builds(
            lambda cred, signed, sig: (
                f"HMAC-SHA256 Credential={cred}, SignedHeaders={signed}, Signature={sig}"
            ),
            header_text,
            st.sampled_from(["host;x-date", "content-type;host;x-content-sha256;x-date", "", "x-date", ";;"]),
            header_text,
        ),
    ),
    x_date=st.one_of(header_text, st.just("20240101T000000Z")),
    sha=st.one_of(st.none(), header_text),
)
def test_arbitrary_auth_headers(
    client: SignedClient, authorization: str, x_date: str, sha: str | None
) -> None:
    """Garbage in the auth headers is a 4xx envelope, never a crash."""
    # h11 (the client) refuses header values with surrounding whitespace.
    headers = {
        "Authorization": authorization.strip(),
        "X-Date": x_date.strip(),
        "Content-Type": "application/json",
    }
    if sha is not None:
        headers["X-Content-Sha256"] = sha.strip()
    resp = client.http.post(
        f"http://{client.host}/",
        params={"Action": "ListRelaySourceV4", "Version": "2023-01-01"},
        content=b"{}",
        headers=headers,
    )
    _check(resp, "ListRelaySourceV4")
    assert resp.status_code in (400, 401, 404)
