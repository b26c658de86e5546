"""The console's JS signer (src/liverelay/console/signer.js, WebCrypto) run by `node`:
it must produce the spec's B.3 signature vectors (the same table tests/unit/test_signing.py
checks the Python signer with) and agree with liverelay.api.signing on GET query strings
with characters that need escaping."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TEST_AK, TEST_SK
from tests.unit.test_signing import VECTORS, Vector, sig_of

from liverelay.api.signing import sign_request

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "js" / "sign_cases.mjs"


def node_binary() -> str:
    path = shutil.which("node") or shutil.which("nodejs")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is required in CI (make sysdeps installs it)")
        pytest.skip("node is not installed")
    return path


def run_js(cases: list[dict[str, Any]]) -> list[dict[str, str]]:
    proc = subprocess.run(
        [node_binary(), str(SCRIPT)],
        input=json.dumps(cases).encode(),
        capture_output=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    result: list[dict[str, str]] = json.loads(proc.stdout)
    return result


def case(
    *,
    method: str,
    host: str,
    query: list[tuple[str, str]],
    body: bytes,
    when: datetime,
    token: str | None = None,
) -> dict[str, Any]:
    return {
        "method": method,
        "host": host,
        "path": "/",
        "query": query,
        "body_b64": base64.b64encode(body).decode(),
        "ak": TEST_AK,
        "sk": TEST_SK,
        "token": token,
        "date": when.isoformat().replace("+00:00", "Z"),
    }


def test_spec_vectors() -> None:
    vectors: list[Vector] = [p.values[0] for p in VECTORS]  # type: ignore[misc]
    cases = [
        case(
            method="POST",
            host=v.host,
            query=[("Action", v.action), ("Version", "2023-01-01")],
            body=v.body,
            when=v.when,
            token=v.token,
        )
        for v in vectors
    ]
    results = run_js(cases)
    assert len(results) == len(vectors) >= 6
    for vector, result in zip(vectors, results, strict=True):
        assert result["signature"] == vector.signature, vector
        assert result["authorization"].endswith(f"Signature={vector.signature}")
    # The spec's own example (vector 1) in full.
    assert results[0]["authorization"] == (
        "HMAC-SHA256 Credential=AKLTtestaccesskeyid00000000/20240101/cn-north-1/live/request, "
        "SignedHeaders=content-type;host;x-content-sha256;x-date, "
        "Signature=b1ecf3a10de4d4c1091ce4dd91b5ff3f0c14356f92c0b6ab0e82ee20a513766e"
    )


def test_get_query_strings_agree_with_the_python_signer() -> None:
    when = datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)
    queries = [
        [
            ("Action", "DescribeLiveStreamInfoByPage"),
            ("Version", "2023-01-01"),
            ("PageNum", "1"),
            ("PageSize", "10"),
        ],
        [
            ("Version", "2023-01-01"),
            ("Action", "DescribeLiveStreamState"),
            ("Stream", "a b/c+d"),
            ("App", "live"),
        ],
        [
            ("Action", "DescribeClosedStreamInfoByPage"),
            ("Version", "2023-01-01"),
            ("Stream", "流~*'()!"),
            ("Z", ""),
        ],
    ]
    cases = [case(method="GET", host="127.0.0.1:8180", query=q, body=b"", when=when) for q in queries]
    cases.append(
        case(method="POST", host="[::1]:443", query=queries[0][:2], body='{"é": 1}'.encode(), when=when)
    )
    results = run_js(cases)
    for c, result in zip(cases, results, strict=True):
        headers = sign_request(
            method=c["method"],
            host=c["host"],
            path="/",
            query=[tuple(p) for p in c["query"]],
            body=base64.b64decode(c["body_b64"]),
            access_key=TEST_AK,
            secret_key=TEST_SK,
            when=when,
        )
        assert result["signature"] == sig_of(headers["Authorization"]), c
        assert result["x_content_sha256"] == headers["X-Content-Sha256"]
