"""Signed-API throughput: requests/s per core of the node, with the latency they see.

`python -m bench.apiload [--procs 3] [--conns 8] [--seconds 10] [--action read|write]`
starts a fresh node (throttle raised out of the way: this measures capacity, not the
limit), creates one domain, then runs --procs client processes with --conns keep-alive
connections each. Every request is signed once up front (the signature stays valid
within api.max_skew_s, and a replay is what a retrying client does anyway), so a client
request costs a socket write and a read: the clients are not the bottleneck (their CPU is
reported). read = ListDomainDetail, write = UpdateRelaySourceV3 (same body each time: the
store writes the row each call). Reported: requests/s, node CPU % of one core over the
window, requests/s per node core, latency p50/p99, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import time
from pathlib import Path
from typing import Any

from liverelay.api.signing import sign_request

from .peers import BENCH_AK, BENCH_SK, LiverelayNode
from .procstat import cpu_times, usage_between
from .profile import start_pyspy

VHOST = "bench-vhost"
ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "read": ("ListDomainDetail", {"PageNum": 1, "PageSize": 10}),
    "write": (
        "UpdateRelaySourceV3",
        {
            "Vhost": VHOST,
            "App": "live",
            "GroupDetails": [
                {
                    "Group": "g",
                    "Servers": [{"RelaySourceProtocol": "rtmp", "RelaySourceDomain": "127.0.0.1:1"}],
                }
            ],
        },
    ),
}
CONFIG = 'log_level = "WARNING"\n[api]\nrate_limit_per_s = 1000000.0\nrate_burst = 1000000\n'


def signed_bytes(host: str, action: str, body: dict[str, Any]) -> bytes:
    raw = json.dumps(body).encode()
    query = [("Action", action), ("Version", "2023-01-01")]
    headers = sign_request(
        method="POST", host=host, path="/", query=query, body=raw, access_key=BENCH_AK, secret_key=BENCH_SK
    )
    lines = [f"POST /?Action={action}&Version=2023-01-01 HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"Content-Length: {len(raw)}", "Connection: keep-alive", "", ""]
    return "\r\n".join(lines).encode() + raw


async def _conn(
    port: int, request: bytes, until: float, lat: list[float], codes: dict[int, int], *, once: bool = False
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while once or time.monotonic() < until:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            codes[status] = codes.get(status, 0) + 1
            if once:
                return
    finally:
        writer.close()


async def _once(port: int, request: bytes) -> int:
    codes: dict[int, int] = {}
    await _conn(port, request, 0.0, [], codes, once=True)
    return next(iter(codes))


def _client(port: int, request: bytes, conns: int, seconds: float, out: Any) -> None:
    lat: list[float] = []
    codes: dict[int, int] = {}
    cpu0 = time.process_time()

    async def main() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(_conn(port, request, until, lat, codes) for _ in range(conns)))

    asyncio.run(main())
    out.put({"lat": lat, "codes": codes, "cpu": time.process_time() - cpu0})


def run(procs: int, conns: int, seconds: float, action: str, profile: Path | None = None) -> dict[str, Any]:
    with LiverelayNode(config=CONFIG) as node:
        name, body = ACTIONS[action]
        host = node.api_host
        setup = signed_bytes(
            host,
            "CreateDomainV2",
            {
                "Vhost": VHOST,
                "Domains": [{"DomainName": "pull.bench.test", "Type": "pull-flv", "Region": "cn"}],
            },
        )
        status = asyncio.run(_once(node.api_port, setup))
        if status != 200:
            raise RuntimeError(f"CreateDomainV2 answered {status}")
        ctx = multiprocessing.get_context("fork")
        q: Any = ctx.Queue()
        request = signed_bytes(host, name, body)
        workers = [
            ctx.Process(target=_client, args=(node.api_port, request, conns, seconds, q))
            for _ in range(procs)
        ]
        before = cpu_times(node.pid)
        for w in workers:
            w.start()
        profiler = start_pyspy(node.pid, seconds, profile) if profile is not None else None
        results = [q.get(timeout=seconds + 60) for _ in workers]
        usage = usage_between(before, cpu_times(node.pid))
        if profiler is not None:
            profiler.stop()
        for w in workers:
            w.join(10)
    lat = sorted(x for r in results for x in r["lat"])
    codes: dict[int, int] = {}
    for r in results:
        for k, v in r["codes"].items():
            codes[k] = codes.get(k, 0) + v
    n = len(lat)
    wall = usage.wall_s
    cpu = usage.percent / 100
    return {
        "action": name,
        "procs": procs,
        "conns": procs * conns,
        "requests": n,
        "rps": n / wall,
        "node_cpu_pct": cpu * 100,
        "rps_per_core": n / wall / cpu if cpu else 0.0,
        "p50_ms": statistics.median(lat) * 1000 if lat else 0.0,
        "p99_ms": lat[int(n * 0.99) - 1] * 1000 if lat else 0.0,
        "status": codes,
        "client_cpu_pct_each": [round(r["cpu"] / seconds * 100, 1) for r in results],
        "loadavg": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=3)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--action", choices=sorted(ACTIONS), default="read")
    parser.add_argument("--profile", type=Path, help="py-spy the node into this file (+ .top.txt)")
    args = parser.parse_args()
    print(json.dumps(run(args.procs, args.conns, args.seconds, args.action, args.profile)))


if __name__ == "__main__":
    main()
