"""Signed-API throughput: requests/s per core of the node, with the latency they see.

`python -m bench.apiload [--procs 3] [--conns 8] [--seconds 10] [--action read|write]
[--rate R] [--src DIR]` starts a fresh node (throttle raised out of the way: this measures
capacity, not the limit), creates one domain, then runs --procs client processes with
--conns keep-alive connections each. Every request is signed once up front (the signature
stays valid within api.max_skew_s, and a replay is what a retrying client does anyway), so
a client request costs a socket write and a read: the clients are not the bottleneck
(their CPU is reported). read = ListDomainDetail, write = UpdateRelaySourceV3 (same body
each time: the store writes the row each call).

Without --rate each connection sends its next request as soon as the answer is in
(closed loop: saturation). With --rate R the clients offer R requests/s in all, on a fixed
schedule per connection, and a latency counts from the request's scheduled time (a
request sent late because the previous answer was slow counts its wait: no coordinated
omission). --src DIR runs the node from another source tree (DIR/src/liverelay, e.g. a
`git archive` of the commit before) for a before/after comparison with the same client.
Reported: offered and served requests/s, node CPU % of one core over the window,
requests/s per node core, latency p50/p90/p99/max, status codes, client CPU, load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from liverelay.api.signing import sign_request

from .peers import BENCH_AK, BENCH_SK, LiverelayNode, python_path
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
    port: int,
    request: bytes,
    until: float,
    lat: list[float],
    codes: dict[int, int],
    *,
    service: list[float] | None = None,
    once: bool = False,
    interval: float = 0.0,
    first: float = 0.0,
) -> None:
    """Requests on one keep-alive connection until `until`: back to back, or one every
    `interval` s from `first` (monotonic clock), latency counted from the scheduled time;
    `service` gets the time from the actual send (what the node and the loopback added,
    without the client's own lateness)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    due = first
    try:
        while once or time.monotonic() < until:
            if interval:
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                # perf_counter and monotonic are both CLOCK_MONOTONIC on Linux.
                t0 = due
                due += interval
                if due >= until:
                    break
            else:
                t0 = time.perf_counter()
            sent = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            done = time.perf_counter()
            lat.append(done - t0)
            if service is not None:
                service.append(done - sent)
            codes[status] = codes.get(status, 0) + 1
            if once:
                return
    finally:
        writer.close()


async def _once(port: int, request: bytes) -> int:
    codes: dict[int, int] = {}
    await _conn(port, request, 0.0, [], codes, once=True)
    return next(iter(codes))


def _client(port: int, request: bytes, conns: int, seconds: float, rate: float, out: Any) -> None:
    """One client process; `rate` = its requests/s (0: closed loop)."""
    lat: list[float] = []
    service: list[float] = []
    codes: dict[int, int] = {}
    cpu0 = time.process_time()

    async def main() -> None:
        start = time.monotonic()
        until = start + seconds
        interval = conns / rate if rate else 0.0
        # Connections spread evenly over one interval, so the offered load is smooth.
        await asyncio.gather(
            *(
                _conn(
                    port,
                    request,
                    until,
                    lat,
                    codes,
                    service=service,
                    interval=interval,
                    first=start + i * interval / conns,
                )
                for i in range(conns)
            )
        )

    asyncio.run(main())
    out.put({"lat": lat, "service": service, "codes": codes, "cpu": time.process_time() - cpu0})


def run(
    procs: int,
    conns: int,
    seconds: float,
    action: str,
    profile: Path | None = None,
    rate: float = 0.0,
    src: Path | None = None,
) -> dict[str, Any]:
    # the node (a child process) imports liverelay from that tree
    with python_path(None if src is None else src.resolve() / "src"):
        return _run(procs, conns, seconds, action, profile, rate)


def _run(
    procs: int, conns: int, seconds: float, action: str, profile: Path | None, rate: float
) -> dict[str, Any]:
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
            ctx.Process(target=_client, args=(node.api_port, request, conns, seconds, rate / procs, q))
            for _ in range(procs)
        ]
        before = cpu_times(node.pid)
        for w in workers:
            w.start()
        profiler = start_pyspy(node.pid, seconds, profile) if profile is not None else None
        fsyncs: list[float] = []
        stop = threading.Event()
        probe = threading.Thread(target=_fsync_probe, args=(node.workdir, stop, fsyncs), daemon=True)
        probe.start()
        results = [q.get(timeout=seconds + 60) for _ in workers]
        stop.set()
        probe.join(5)
        usage = usage_between(before, cpu_times(node.pid))
        if profiler is not None:
            profiler.stop()
        for w in workers:
            w.join(10)
    lat = sorted(x for r in results for x in r["lat"])
    service = sorted(x for r in results for x in r["service"])
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
        "offered_rps": rate or "closed loop",
        "requests": n,
        "rps": n / wall,
        "node_cpu_pct": cpu * 100,
        "node_sys_pct": usage.sys_percent,
        "rps_per_core": n / wall / cpu if cpu else 0.0,
        "p50_ms": statistics.median(lat) * 1000 if lat else 0.0,
        "p90_ms": _pct(lat, 0.90),
        "p99_ms": _pct(lat, 0.99),
        "max_ms": lat[-1] * 1000 if lat else 0.0,
        "service_p50_ms": _pct(service, 0.50),
        "service_p99_ms": _pct(service, 0.99),
        "status": codes,
        "fsync_ms_p50_max": [round(_pct(sorted(fsyncs), 0.5), 2), round(max(fsyncs, default=0.0) * 1000, 2)],
        "client_cpu_pct_each": [round(r["cpu"] / seconds * 100, 1) for r in results],
        "loadavg": os.getloadavg()[0],
    }


def _fsync_probe(directory: Path, stop: threading.Event, out: list[float]) -> None:
    """fsync latency of the node's disk during the window (a write waits for at least one):
    a 4 kB append and fsync every 100 ms, in seconds."""
    path = directory / "fsync-probe.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(10_000):  # bounded: 1000 s at most
            if stop.wait(0.1):
                return
            os.write(fd, b"\0" * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            out.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def _pct(ordered: list[float], q: float) -> float:
    return ordered[max(int(len(ordered) * q) - 1, 0)] * 1000 if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=3)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--action", choices=sorted(ACTIONS), default="read")
    parser.add_argument("--profile", type=Path, help="py-spy the node into this file (+ .top.txt)")
    parser.add_argument("--rate", type=float, default=0.0, help="offered requests/s in all (0: closed loop)")
    parser.add_argument("--src", type=Path, help="run the node from this source tree (before/after)")
    args = parser.parse_args()
    result = run(args.procs, args.conns, args.seconds, args.action, args.profile, args.rate, args.src)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
