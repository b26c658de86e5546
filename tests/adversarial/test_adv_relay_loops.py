"""ISSUE-8 class 1: relay loops end, and stream names round-trip between nodes.

Loops: a node whose play-triggered (V3) origin is itself, or two nodes that are each
other's origin, over RTMP or HTTP-FLV. Viewers ask for names with `%`, a space and
non-ASCII characters that no one publishes. Each name may cost at most one extra hop
(two pull rows per name and node), the viewers get not-found, and the node holds.

Round trip: an edge relaying an origin plays, for names with `%`, space, `+`, `?` and
non-ASCII characters, exactly the stream published under that name on the origin (each
publisher tags its stream's metadata; the viewer checks the tag), over RTMP and HTTP-FLV.
A stream is named by the path of its URL: what a publisher puts in rtmp://origin/app/PATH
a viewer finds at rtmp://edge/app/PATH and http://edge/app/PATH.flv.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.adversarial.conftest import HarnessFactory, NodeFactory
from tests.adversarial.harness import APP, Harness, origin_server, relay_rows, set_v3_origins
from tests.adversarial.wire import attacker_address, http_status, raw_http
from tests.conftest import NodeProcess, ffmpeg_publish

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(120)]

LOOP_NAMES = ("loop%x", "loop x", "loopü视频")
ROUND_TRIP_NAMES = ("a%b", "a b", "a+b", "a?b", "ü视频")
# A runaway loop adds a pull per hop in milliseconds: stop looking well before it hurts.
RUNAWAY_ROWS = 4 * len(LOOP_NAMES)
MAX_ROWS = 2 * len(LOOP_NAMES)  # the pull a viewer asked for, plus at most one hop
OBSERVE_S = 10.0  # start_timeout_s (5 s) and then some
VIEWER_ANSWER_S = 15.0


def path_of(name: str) -> str:
    return quote(name, safe="")


def _ask_missing(port: int, name: str, source: str) -> int:
    """An HTTP-FLV viewer asking for `name`; the status it got (0 = none in time)."""
    request = f"GET /{APP}/{path_of(name)}.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    with raw_http(port, source=source, timeout=VIEWER_ANSWER_S) as sock:
        status, _ = http_status(sock, request, timeout=VIEWER_ANSWER_S)
    return status


@pytest.mark.parametrize("protocol", ["rtmp", "flv"])
@pytest.mark.parametrize("topology", ["self", "pair"])
def test_relay_loop_ends(
    harness_factory: HarnessFactory, node_factory_adv: NodeFactory, protocol: str, topology: str
) -> None:
    harness: Harness = harness_factory()
    node = harness.node
    nodes = [node]

    def port_of(n: NodeProcess) -> int:
        return n.rtmp_port if protocol == "rtmp" else n.http_port

    if topology == "self":
        set_v3_origins(node, [origin_server(protocol, port_of(node))])
    else:
        other = node_factory_adv("other")
        nodes.append(other)
        set_v3_origins(node, [origin_server(protocol, port_of(other))])
        set_v3_origins(other, [origin_server(protocol, port_of(node))])
    peak = {n.api_port: 0 for n in nodes}
    seen: dict[int, set[str]] = {n.api_port: set() for n in nodes}
    with harness.attack_guard(
        f"relay loop ({topology}, {protocol})", max_log_lines=20 * len(LOOP_NAMES) + 20
    ) as guard:
        with ThreadPoolExecutor(len(LOOP_NAMES)) as pool:
            viewers = [
                pool.submit(_ask_missing, node.http_port, name, attacker_address(i))
                for i, name in enumerate(LOOP_NAMES)
            ]
            deadline = time.monotonic() + OBSERVE_S
            while time.monotonic() < deadline:
                for n in nodes:
                    rows = relay_rows(n, "play")
                    peak[n.api_port] = max(peak[n.api_port], len(rows))
                    seen[n.api_port] |= {str(r["Stream"]) for r in rows}
                if max(peak.values()) > RUNAWAY_ROWS:
                    break
                if all(v.done() for v in viewers) and all(not relay_rows(n, "play") for n in nodes):
                    break
                time.sleep(0.3)
            guard.note(f"peak play-pull rows per node: {list(peak.values())}")
            guard.note("streams pulled: " + "; ".join(repr(sorted(s))[:600] for s in seen.values()))
            most = max(peak.values())
            assert most <= MAX_ROWS, (
                f"the loop multiplied: {most} play pulls on one node for {len(LOOP_NAMES)} names"
            )
            statuses = [v.result(timeout=VIEWER_ANSWER_S) for v in viewers]
        guard.note(f"viewer answers: {statuses}")
        assert statuses == [404] * len(LOOP_NAMES), f"viewers of missing names got {statuses}"


PROBE_TAG = ["-v", "error", "-rw_timeout", "5000000", "-show_entries", "format_tags=comment"]
PROBE_TAG += ["-read_intervals", "%+1", "-of", "json"]


def _probe_tag(ffprobe: str, url: str, deadline: float) -> str:
    """The `comment` metadata tag of the stream at `url` (retried until `deadline`: the
    origin's publisher or the edge's pull may not be up yet); "" if none was read."""
    last = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(
            [ffprobe, *PROBE_TAG, url],
            capture_output=True,
            timeout=20,
            check=False,
        )
        if proc.returncode == 0:
            with contextlib.suppress(ValueError, KeyError, AttributeError):
                return str(json.loads(proc.stdout)["format"]["tags"]["comment"])
        last = proc.stderr.decode(errors="replace")[-200:]
        time.sleep(0.5)
    return f"(nothing: {last.strip()})"


@pytest.mark.parametrize("protocol", ["rtmp", "flv"])
def test_names_round_trip_edge_to_origin(
    node_factory_adv: NodeFactory, ffmpeg: str, ffprobe: str, sample_flv: Path, protocol: str
) -> None:
    origin = node_factory_adv("origin")
    edge = node_factory_adv("edge")
    port = origin.rtmp_port if protocol == "rtmp" else origin.http_port
    set_v3_origins(edge, [origin_server(protocol, port)])
    tags = {name: f"adv-tag-{i}" for i, name in enumerate(ROUND_TRIP_NAMES)}
    with contextlib.ExitStack() as stack:
        for name, tag in tags.items():
            url = origin.rtmp_url(APP, path_of(name))
            stack.enter_context(
                ffmpeg_publish(ffmpeg, sample_flv, url, extra=["-metadata", f"comment={tag}"])
            )
        viewers: dict[str, Callable[[str], str]] = {
            "rtmp": lambda name: edge.rtmp_url(APP, path_of(name)),
            "http-flv": lambda name: edge.flv_url(APP, path_of(name)),
        }
        deadline = time.monotonic() + 30
        with ThreadPoolExecutor(4) as pool:
            futures = {
                (name, kind): pool.submit(_probe_tag, ffprobe, make(name), deadline)
                for name in tags
                for kind, make in viewers.items()
            }
            got = {key: f.result(timeout=60) for key, f in futures.items()}
    wrong = {f"{kind} {name!r}": tag for (name, kind), tag in got.items() if tag != tags[name]}
    assert not wrong, f"edge viewers (relay over {protocol}) got the wrong stream or none: {wrong}"
