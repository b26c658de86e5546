"""ISSUE-8 class 7: small hostile inputs get short, clean answers.

- `Host: x:99999999` on the HTTP-FLV port: 400, no traceback, at most a line of log.
- A 1 MB (and a 12 KB) tcUrl in RTMP connect (unknown domain: the node refuses it):
  whatever the node answers and logs is short (clipped), never the tcUrl echoed back.
- A 401-digit Page or Size in ListRelaySourceV4: a short error that does not echo it.
- Duplicate Action or Version query parameters: InvalidParam, not "first one wins".
- Duplicate JSON keys in a body: InvalidParam.BindError.
Every request is correctly signed, so the refusal is for the input itself.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.adversarial.harness import APP, PULL_DOMAIN, WATCH_STREAM, Harness, action_query, signed_call
from tests.adversarial.wire import (
    AttackSockets,
    attacker_address,
    connect_command,
    http_status,
    raw_http,
    rtmp_handshake,
    send_in_blocks,
    set_chunk_size,
)

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(60)]

MAX_REPLY_BYTES = 4 * 1024
MAX_ERROR_BODY = 2048
HUGE = "1" + "0" * 400  # 401 digits


@pytest.fixture(scope="module")
def harnessed(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str, sample_flv: Path) -> Iterator[Harness]:
    """One harnessed node for the whole module (every test leaves it as it found it)."""
    with contextlib.ExitStack() as stack:
        yield Harness.start(stack, tmp_path_factory.mktemp("small") / "node", ffmpeg, sample_flv)


def _error_code(body: bytes) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        error = json.loads(body).get("ResponseMetadata", {}).get("Error")
        return str(error.get("Code")) if error else None
    return None


@pytest.mark.parametrize("host", ["x:99999999", "127.0.0.1:99999999", "127.0.0.1:-1"])
def test_host_with_a_bad_port_is_a_400(harnessed: Harness, host: str) -> None:
    request = f"GET /{APP}/{WATCH_STREAM}.flv HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    with harnessed.attack_guard(f"Host: {host}", max_log_lines=1) as guard:
        with raw_http(harnessed.node.http_port, source=attacker_address(0)) as sock:
            status, reply = http_status(sock, request)
        guard.note(f"reply: {reply[:200]!r}")
        assert status == 400, f"Host {host!r} got {status}"


@pytest.mark.parametrize("size", [1 << 20, 12 * 1024], ids=["1MB", "12KB"])
def test_huge_tcurl_is_not_echoed(harnessed: Harness, size: int) -> None:
    """1 MB: past any sane command size (the node may just close). 12 KB: under a small
    pre-connect command cap, so the refusal is sent and logged: clipped."""
    tc_url = "rtmp://" + "a" * size + f".example:{harnessed.node.rtmp_port}/{APP}"
    with (
        harnessed.attack_guard(f"{size}-byte tcUrl", max_log_lines=2) as guard,
        AttackSockets() as attack,
    ):
        conn = attack.open(harnessed.node.rtmp_port, "huge tcUrl", source=attacker_address(1))
        rtmp_handshake(conn)
        conn.sock.settimeout(10)
        big = 0xFFFFFF
        send_in_blocks(conn, set_chunk_size(big) + connect_command(0, tc_url=tc_url, chunk_size=big))
        attack.wait_closed_by_node(5)
        guard.note(attack.summary() + f", {conn.received} bytes received after the handshake")
        assert conn.received <= MAX_REPLY_BYTES, (
            f"the node answered a {size}-byte tcUrl with {conn.received} bytes"
        )


def _list_call(harnessed: Harness, body: bytes) -> tuple[int, bytes]:
    return signed_call(harnessed.node, action_query("ListRelaySourceV4"), body)


@pytest.mark.parametrize("field", ["Page", "Size"])
def test_huge_page_numbers_get_a_short_error(harnessed: Harness, field: str) -> None:
    body = f'{{"Domain": "{PULL_DOMAIN}", "{field}": {HUGE}}}'.encode()
    with harnessed.attack_guard(f"401-digit {field}", max_log_lines=1) as guard:
        status, reply = _list_call(harnessed, body)
        guard.note(f"reply ({status}, {len(reply)} bytes): {reply[:300]!r}")
        assert status == 400 and _error_code(reply), f"a 401-digit {field} got {status}"
        assert len(reply) <= MAX_ERROR_BODY, f"the error is {len(reply)} bytes"
        assert not re.search(rb"\d{40}", reply), "the number is echoed back"


@pytest.mark.parametrize(
    "query",
    [
        [("Action", "ListRelaySourceV4"), ("Action", "DeleteRelaySourceV4"), ("Version", "2023-01-01")],
        [("Action", "ListRelaySourceV4"), ("Version", "2023-01-01"), ("Version", "2099-01-01")],
        [("Action", "ListRelaySourceV4"), ("Action", "ListRelaySourceV4"), ("Version", "2023-01-01")],
    ],
    ids=["two-actions", "two-versions", "same-action-twice"],
)
def test_duplicate_action_or_version_is_refused(harnessed: Harness, query: list[tuple[str, str]]) -> None:
    body = json.dumps({"Domain": PULL_DOMAIN}).encode()
    with harnessed.attack_guard("duplicate Action/Version", max_log_lines=1) as guard:
        status, reply = signed_call(harnessed.node, query, body)
        guard.note(f"reply ({status}): {reply[:300]!r}")
        code = _error_code(reply)
        assert status == 400 and code is not None and code.startswith("InvalidParam"), (
            f"duplicate query parameters got {status} {code}"
        )


@pytest.mark.parametrize(
    "body",
    [
        f'{{"Domain": "{PULL_DOMAIN}", "Domain": "other.example"}}',
        f'{{"Domain": "{PULL_DOMAIN}", "Page": 1, "Page": 2}}',
        f'{{"Domain": "{PULL_DOMAIN}", "Size": 10, "Size": 10}}',
    ],
    ids=["different-values", "page-twice", "same-value-twice"],
)
def test_duplicate_json_keys_are_a_bind_error(harnessed: Harness, body: str) -> None:
    with harnessed.attack_guard("duplicate JSON keys", max_log_lines=1) as guard:
        status, reply = _list_call(harnessed, body.encode())
        guard.note(f"reply ({status}): {reply[:300]!r}")
        code = _error_code(reply)
        assert status == 400 and code == "InvalidParam.BindError", f"duplicate JSON keys got {status} {code}"
