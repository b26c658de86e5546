"""ISSUE-13 Faults, API: a burst of unsigned and wrongly signed requests from one address.

Expected behaviour: requests that fail authentication spend a per-address token bucket
(api.unauth_rate_per_ip per second, api.unauth_burst_per_ip at once). Once the attacker's
address has spent it, every request from that address is answered 429 (the Volcengine
envelope, Retry-After) before its signature is even checked, so a key cannot be guessed at
line rate: of BURST requests only about burst + rate x duration are evaluated. Other
addresses are not affected: the harness's signed API client (127.0.0.1) keeps answering
within its latency bound all along, an unsigned request from a third address still gets
its 401 (not 429), and the harness's viewer keeps playing. The attacker's address gets a
signed request through again once its bucket has refilled.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import aiohttp
import pytest
from tests.adversarial.harness import PULL_DOMAIN, Harness, action_query, signed_headers
from tests.adversarial.wire import attacker_address

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(120)]

BURST = 10_000
CLIENTS = 8  # concurrent keep-alive connections of the attacker
UNAUTH_RATE = 5.0
UNAUTH_BURST = 50
CONFIG_EXTRA = f"unauth_rate_per_ip = {UNAUTH_RATE}\nunauth_burst_per_ip = {UNAUTH_BURST}\n"


def config() -> str:
    from tests.adversarial.harness import ADV_CONFIG

    assert "[api]\n" in ADV_CONFIG
    return ADV_CONFIG.replace("[api]\n", "[api]\n" + CONFIG_EXTRA, 1)


async def flood(port: int, source: str, total: int) -> tuple[Counter[int], float]:
    """`total` POSTs from `source`, alternately unsigned and with a wrong signature, over
    CLIENTS keep-alive connections: (status counts, seconds taken)."""
    query = "/?Action=ListRelaySourceV4&Version=2023-01-01"
    wrong = {
        "Authorization": "HMAC-SHA256 Credential=AKLTguess/20240101/cn-north-1/live/request, "
        "SignedHeaders=content-type;host;x-content-sha256;x-date, Signature=" + "0" * 64,
        "X-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        "Content-Type": "application/json",
    }
    counts: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(limit=CLIENTS, local_addr=(source, 0), force_close=False)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def client(n: int) -> None:
            for i in range(n):
                headers = wrong if i % 2 else {"Content-Type": "application/json"}
                async with session.post(f"http://127.0.0.1:{port}{query}", data=b"{}", headers=headers) as r:
                    await r.read()
                    counts[r.status] += 1

        share = total // CLIENTS
        await asyncio.gather(*(client(share + (1 if k < total % CLIENTS else 0)) for k in range(CLIENTS)))
    return counts, time.monotonic() - started


async def status_from(port: int, source: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(
            f"http://127.0.0.1:{port}/?Action=ListRelaySourceV4&Version=2023-01-01",
            data=body,
            headers=headers,
        ) as r,
    ):
        return r.status, json.loads(await r.read())


def test_unauthenticated_burst_is_limited_per_address(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h: Harness = harness_factory(config=config())
    node = h.node
    attacker, bystander = attacker_address(0), attacker_address(1)  # 127.0.0.2, 127.0.0.3
    body = json.dumps({"Domain": PULL_DOMAIN, "Page": 1, "Size": 10}).encode()
    signed = signed_headers(node, action_query("ListRelaySourceV4"), body)
    with h.attack_guard("10,000 unsigned/wrongly signed API requests from one address", max_log_lines=40):
        counts, took = asyncio.run(flood(node.api_port, attacker, BURST))
        print(f"\nburst of {BURST} from {attacker}: {dict(counts)} in {took:.2f}s ({BURST / took:.0f} req/s)")
        assert sum(counts.values()) == BURST
        evaluated = BURST - counts[429]
        # Only the bucket's burst plus its refill over the burst's duration got a signature
        # check (a little slack for the rounding of the refill).
        assert evaluated <= UNAUTH_BURST + UNAUTH_RATE * took + 2, counts
        assert evaluated >= UNAUTH_BURST, counts  # the budget itself is honoured
        assert set(counts) <= {400, 401, 429}, counts
        # Another address: its own unsigned request is evaluated (401), not throttled.
        status, answer = asyncio.run(status_from(node.api_port, bystander, {}, body))
        assert status == 401, (status, answer)
        assert answer["ResponseMetadata"]["Error"]["Code"] == "MissingAuthenticationToken", answer
        # The attacker's address, even correctly signed, is refused while its bucket is empty.
        status, answer = asyncio.run(status_from(node.api_port, attacker, signed, body))
        assert status == 429, (status, answer)
        assert answer["ResponseMetadata"]["Error"]["Code"] == "FlowLimitExceeded", answer
    # ... and is served again once a token has come back (1 / UNAUTH_RATE seconds).
    deadline = time.monotonic() + 10.0
    status = 0
    while time.monotonic() < deadline:
        headers = signed_headers(node, action_query("ListRelaySourceV4"), body)
        status, answer = asyncio.run(status_from(node.api_port, attacker, headers, body))
        if status == 200:
            break
        time.sleep(1.0 / UNAUTH_RATE)
    assert status == 200, (status, answer)
    # The harness's signed client on 127.0.0.1 was checked by attack_guard all along.
