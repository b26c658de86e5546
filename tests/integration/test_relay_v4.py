"""Fixed (V4) relays end to end: nodes as subprocesses, configured with signed API calls.

Origins are real: another liverelay node fed by ffmpeg (RTMP and HTTP-FLV sources),
ffmpeg writing a live HLS playlist served over HTTP, ffmpeg as an SRT listener.
Viewers are ffprobe/ffmpeg on the relay node's RTMP and HTTP-FLV listeners; no viewer
is connected when a relay is created, so media arriving proves the pull runs by itself.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import (
    TEST_AK,
    TEST_SK,
    NodeProcess,
    ffmpeg_publish,
    free_port,
    start_node,
    stop_process,
)
from tests.integration.relay_helpers import ffprobe_json
from tests.integration.test_relay_v4_sources import hls_origin, srt_listener

from liverelay.sdk import LiveService

VHOST = "vh-fixed"
PULL_DOMAIN = "pull.fixed.test"
PUSH_DOMAIN = "push.fixed.test"
APP = "live"

# Short timeouts so failures, failover and restarts happen within seconds.
RELAY_CONFIG = """
[relay]
connect_timeout_s = 2.0
first_frame_timeout_s = 6.0
no_media_timeout_s = 3.0
start_timeout_s = 15.0
backoff_initial_s = 0.3
backoff_max_s = 1.0
failback_probe_interval_s = 2.0
"""


# -- helpers ----------------------------------------------------------------------------------


def api(node: NodeProcess) -> LiveService:
    return LiveService(node.api_host, TEST_AK, TEST_SK, scheme="http", max_retries=0)


def setup_domains(node: NodeProcess) -> LiveService:
    service = api(node)
    service.create_domain_v2(
        {
            "Vhost": VHOST,
            "Domains": [
                {"DomainName": PULL_DOMAIN, "Type": "pull-flv", "Region": "cn"},
                {"DomainName": PUSH_DOMAIN, "Type": "push", "Region": "cn"},
            ],
        }
    )
    return service


def relay_rows(service: LiveService, stream: str | None = None) -> list[dict[str, Any]]:
    result = service.describe_relay_status({"Type": "fixed", "Vhost": VHOST})["Result"]
    rows = result["RelayStatusList"]
    return [r for r in rows if stream is None or r["Stream"] == stream]


def wait_row(
    service: LiveService,
    stream: str,
    cond: Callable[[dict[str, Any] | None], bool],
    timeout: float,
    what: str,
) -> dict[str, Any] | None:
    """Poll DescribeRelayStatus (10 Hz, bounded) until `cond(row)` holds; the row or None."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while True:
        rows = relay_rows(service, stream)
        last = rows[0] if rows else None
        if cond(last):
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout}s; last row: {last}")
        time.sleep(0.1)


def wait_up(service: LiveService, stream: str, timeout: float = 20.0) -> dict[str, Any]:
    row = wait_row(service, stream, lambda r: r is not None and r["State"] == "up", timeout, f"{stream} up")
    assert row is not None
    return row


def probe_video(
    ffprobe: str, node: NodeProcess, stream: str, *, protocol: str, frames: int = 10
) -> dict[str, Any]:
    """Decode `frames` video frames from the relay node as a viewer of PULL_DOMAIN would."""
    if protocol == "rtmp":
        url = node.rtmp_url(APP, stream)
        # The domain travels in tcUrl (the connect URL), which is how the node finds the vhost.
        extra = ["-rtmp_tcurl", f"rtmp://{PULL_DOMAIN}:{node.rtmp_port}/{APP}", "-rtmp_live", "live"]
    else:
        url = node.flv_url(APP, stream)
        extra = ["-headers", f"Host: {PULL_DOMAIN}\r\n"]
    args = [*extra, "-count_frames", "-read_intervals", f"%+#{frames}"]
    args += ["-show_entries", "stream=codec_name,width,height,nb_read_frames"]
    streams = ffprobe_json(ffprobe, url, args, timeout=30, what=protocol)["streams"]
    assert streams, f"no video stream over {protocol}"
    return streams[0]


def assert_plays(
    ffprobe: str, node: NodeProcess, stream: str, protocols: tuple[str, ...] = ("rtmp", "flv")
) -> None:
    for protocol in protocols:
        info = probe_video(ffprobe, node, stream, protocol=protocol)
        assert info["codec_name"] == "h264" and info["width"] == 640 and info["height"] == 360, info
        assert int(info["nb_read_frames"]) >= 5, info


def play_refused(ffprobe: str, node: NodeProcess, stream: str) -> bool:
    """True when an HTTP-FLV play of the stream gets no media (the stream is absent)."""
    proc = subprocess.run(
        [
            ffprobe,
            "-v",
            "error",
            "-rw_timeout",
            "3000000",
            "-headers",
            f"Host: {PULL_DOMAIN}\r\n",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "json",
            node.flv_url(APP, stream),
        ],
        capture_output=True,
        timeout=15,
        check=False,
    )
    return proc.returncode != 0 or not json.loads(proc.stdout or b"{}").get("streams")


def children(pid: int, name: str) -> list[int]:
    """Child processes of `pid` with that command name, zombies included."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and comm == name:
            found.append(int(entry.name))
    return found


def create_fixed(service: LiveService, stream: str, src: list[str], **window: int) -> str:
    body: dict[str, Any] = {"Domain": PULL_DOMAIN, "App": APP, "Stream": stream, "SrcAddrS": src, **window}
    return str(service.create_relay_source_v4(body)["Result"]["TaskId"])


@pytest.fixture
def relay_node(node_factory: Any) -> NodeProcess:
    return node_factory("relay", config=RELAY_CONFIG)  # type: ignore[no-any-return]


@pytest.fixture
def origin(node_factory: Any, ffmpeg: str, sample_flv: Path) -> Iterator[NodeProcess]:
    """Another liverelay node with ffmpeg publishing `live/src` to it (default vhost)."""
    node = node_factory("origin")
    with ffmpeg_publish(ffmpeg, sample_flv, node.rtmp_url(APP, "src")):
        yield node


# -- one test per source type ------------------------------------------------------------------


def test_rtmp_and_flv_sources_play_with_no_viewer_asking(
    relay_node: NodeProcess, origin: NodeProcess, ffprobe: str
) -> None:
    service = setup_domains(relay_node)
    create_fixed(service, "from-rtmp", [origin.rtmp_url(APP, "src")])
    create_fixed(service, "from-flv", [origin.flv_url(APP, "src")])
    for stream in ("from-rtmp", "from-flv"):
        row = wait_up(service, stream)
        assert row["Viewers"] == 0 and row["Frames"] > 0
    assert_plays(ffprobe, relay_node, "from-rtmp")
    assert_plays(ffprobe, relay_node, "from-flv", protocols=("flv",))


def test_hls_source(node_factory: Any, ffmpeg: str, ffprobe: str, sample_flv: Path, tmp_path: Path) -> None:
    # The ffmpeg fallback (relay.hls_puller); the native puller: test_hls_native_relay.py.
    relay_node = node_factory("relay", config=RELAY_CONFIG + 'hls_puller = "ffmpeg"\n')
    service = setup_domains(relay_node)
    with hls_origin(ffmpeg, sample_flv, tmp_path / "hls") as hls:
        create_fixed(service, "from-hls", [hls.url])
        row = wait_up(service, "from-hls", timeout=25)
        assert row["SourceUrl"] == hls.url and row["Viewers"] == 0
        assert_plays(ffprobe, relay_node, "from-hls")
        assert len(children(relay_node.proc.pid, "ffmpeg")) == 1
        service.delete_relay_source_v4({"Domain": PULL_DOMAIN, "App": APP, "Stream": "from-hls"})
        deadline = time.monotonic() + 3
        while children(relay_node.proc.pid, "ffmpeg"):  # killed and reaped (zombies count too)
            assert time.monotonic() < deadline, "the node left its ffmpeg behind"
            time.sleep(0.05)


def test_srt_source(relay_node: NodeProcess, ffmpeg: str, ffprobe: str, sample_flv: Path) -> None:
    service = setup_domains(relay_node)
    port = free_port()
    with srt_listener(ffmpeg, sample_flv, port, passphrase="fixed-relay-pass"):
        create_fixed(
            service, "from-srt", [f"srt://127.0.0.1:{port}?streamid=live/x&passphrase=fixed-relay-pass"]
        )
        wait_up(service, "from-srt")
        assert_plays(ffprobe, relay_node, "from-srt")


# -- schedule ----------------------------------------------------------------------------------


def test_window_starts_and_ends_on_time(relay_node: NodeProcess, origin: NodeProcess, ffprobe: str) -> None:
    service = setup_domains(relay_node)
    start = int(time.time()) + 3
    create_fixed(service, "windowed", [origin.rtmp_url(APP, "src")], StartTime=start, EndTime=start + 7)
    row = relay_rows(service, "windowed")[0]
    assert row["State"] == "scheduled" and row["NextStart"] == start
    assert play_refused(ffprobe, relay_node, "windowed")

    row = wait_row(service, "windowed", lambda r: r is not None and r["State"] != "scheduled", 6, "start")
    started_late = time.time() - start
    # Never before StartTime; "on time" is a generous bound (a loaded 2-core CI box is slow to poll).
    assert -0.2 <= started_late <= 3.0, f"started {started_late:.2f}s after StartTime"
    wait_up(service, "windowed", timeout=10)
    assert_plays(ffprobe, relay_node, "windowed", protocols=("flv",))

    wait_row(service, "windowed", lambda r: r is not None and r["State"] == "ended", 10, "end")
    ended_late = time.time() - (start + 7)
    assert -0.2 <= ended_late <= 3.0, f"ended {ended_late:.2f}s after EndTime"
    assert play_refused(ffprobe, relay_node, "windowed")


def test_past_window_is_accepted_and_ended(relay_node: NodeProcess, origin: NodeProcess) -> None:
    service = setup_domains(relay_node)
    now = int(time.time())
    src = [origin.rtmp_url(APP, "src")]
    task_id = create_fixed(service, "past", src, StartTime=now - 600, EndTime=now - 60)
    assert task_id.isdigit()
    row = relay_rows(service, "past")[0]
    assert row["State"] == "ended" and row["TaskId"] == task_id and row["Attempts"] == 0


# -- failover, update, delete, restart -----------------------------------------------------


def test_failover_keeps_the_viewer(
    relay_node: NodeProcess, node_factory: Any, ffmpeg: str, sample_flv: Path
) -> None:
    origin = node_factory("origin")
    service = setup_domains(relay_node)
    dead, alive = origin.rtmp_url(APP, "a"), origin.rtmp_url(APP, "b")
    with ffmpeg_publish(ffmpeg, sample_flv, alive) as publisher_b:
        create_fixed(service, "fo", [dead, alive])
        row = wait_up(service, "fo")
        assert row["SourceIndex"] == 1 and row["SourceUrl"] == alive
        viewer_out = relay_node.data_dir / "viewer.flv"
        viewer = subprocess.Popen(
            [
                ffmpeg,
                "-hide_banner",
                "-loglevel",
                "error",
                "-rw_timeout",
                "20000000",
                "-headers",
                f"Host: {PULL_DOMAIN}\r\n",
                "-i",
                relay_node.flv_url(APP, "fo"),
                "-c",
                "copy",
                "-f",
                "flv",
                "-y",
                str(viewer_out),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_row(service, "fo", lambda r: r is not None and r["Viewers"] >= 1, 10, "viewer counted")
            deadline = time.monotonic() + 10
            while not (viewer_out.exists() and viewer_out.stat().st_size > 50_000):
                assert time.monotonic() < deadline and viewer.poll() is None, "the viewer gets no media"
                time.sleep(0.1)
            stop_process(publisher_b)  # the origin in use goes away ...
            with ffmpeg_publish(ffmpeg, sample_flv, dead):  # ... and the first one comes up
                row = wait_row(
                    service,
                    "fo",
                    lambda r: r is not None and r["State"] == "up" and r["SourceIndex"] == 0,
                    20,
                    "switch to source 0",
                )
                assert row is not None and row["Switches"] >= 1 and row["SourceUrl"] == dead
                size_at_switch = viewer_out.stat().st_size
                deadline = time.monotonic() + 5
                while viewer_out.stat().st_size < size_at_switch + 100_000:  # ~1 s of the sample
                    assert viewer.poll() is None, "the viewer was disconnected by the failover"
                    assert time.monotonic() < deadline, "the viewer gets no media after the switch"
                    time.sleep(0.1)
                assert viewer.poll() is None, "the viewer was disconnected by the failover"
        finally:
            stop_process(viewer)
            if viewer.stderr:
                viewer.stderr.close()


def test_update_switches_and_delete_stops_at_once(
    relay_node: NodeProcess, node_factory: Any, ffmpeg: str, ffprobe: str, sample_flv: Path
) -> None:
    origin = node_factory("origin")
    service = setup_domains(relay_node)
    first, second = origin.rtmp_url(APP, "one"), origin.rtmp_url(APP, "two")
    with ffmpeg_publish(ffmpeg, sample_flv, first), ffmpeg_publish(ffmpeg, sample_flv, second):
        task_id = create_fixed(service, "upd", [first])
        wait_up(service, "upd")
        # Still listed -> untouched.
        target = {"Domain": PULL_DOMAIN, "App": APP, "Stream": "upd"}
        service.update_relay_source_v4({**target, "SrcAddrS": [second, first]})
        time.sleep(0.5)
        row = relay_rows(service, "upd")[0]
        assert row["SourceUrl"] == first and row["Switches"] == 0 and row["TaskId"] == task_id
        # Gone from the list -> switch now.
        service.update_relay_source_v4({**target, "SrcAddrS": [second]})
        row = wait_row(
            service,
            "upd",
            lambda r: r is not None and r["SourceUrl"] == second and r["State"] == "up",
            10,
            "switch",
        )
        assert_plays(ffprobe, relay_node, "upd", protocols=("flv",))

        # A new window reschedules at once: permanent -> opens in ~2 s.
        start = int(time.time()) + 2
        window = {"StartTime": start, "EndTime": start + 600}
        service.update_relay_source_v4({**target, "SrcAddrS": [second], **window})
        row = relay_rows(service, "upd")[0]  # applied before the call returned
        assert row["State"] == "scheduled"
        assert row is not None and row["NextStart"] == start and row["TaskId"] == task_id
        wait_up(service, "upd", timeout=10)
        assert time.time() >= start

        # A viewer connected at the time of the Delete must see the stream end at once.
        viewer = subprocess.Popen(
            [
                ffmpeg,
                "-hide_banner",
                "-loglevel",
                "error",
                "-headers",
                f"Host: {PULL_DOMAIN}\r\n",
                "-i",
                relay_node.flv_url(APP, "upd"),
                "-c",
                "copy",
                "-f",
                "null",
                "-",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_row(service, "upd", lambda r: r is not None and r["Viewers"] >= 1, 10, "viewer counted")
            t0 = time.monotonic()
            service.delete_relay_source_v4(target)
            wait_row(service, "upd", lambda r: r is None, 4.0, "task gone")
            viewer.wait(timeout=5)
            eof_after = time.monotonic() - t0
            # Soon, not at the viewer's own timeout: a generous bound, the wait is on the EOF itself.
            assert eof_after <= 4.0, f"the viewer got EOF {eof_after:.2f}s after Delete"
        finally:
            stop_process(viewer)
        assert play_refused(ffprobe, relay_node, "upd")


def test_restart_after_kill9_resumes_the_task(
    node_factory: Any, origin: NodeProcess, ffprobe: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "restarted"
    node = start_node(data_dir, config=RELAY_CONFIG)
    try:
        service = setup_domains(node)
        task_id = create_fixed(service, "durable", [origin.rtmp_url(APP, "src")])
        wait_up(service, "durable")
        node.kill()  # SIGKILL: no chance to clean up
        node = start_node(data_dir, config=RELAY_CONFIG)
        service = api(node)
        row = wait_up(service, "durable")
        assert row["TaskId"] == task_id
        assert_plays(ffprobe, node, "durable", protocols=("flv",))
    finally:
        node.kill()


def test_publisher_and_play_trigger_cannot_take_a_fixed_relay_stream(
    relay_node: NodeProcess, origin: NodeProcess, ffmpeg: str, ffprobe: str, sample_flv: Path
) -> None:
    service = setup_domains(relay_node)
    create_fixed(service, "owned", [origin.rtmp_url(APP, "src")])
    wait_up(service, "owned")
    proc = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-t",
            "3",
            "-i",
            str(sample_flv),
            "-c",
            "copy",
            "-rtmp_tcurl",
            f"rtmp://{PUSH_DOMAIN}:{relay_node.rtmp_port}/{APP}",
            "-f",
            "flv",
            relay_node.rtmp_url(APP, "owned"),
        ],
        capture_output=True,
        timeout=20,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0, "the publisher was accepted on a fixed-relay stream"
    # NetStream.Publish.BadName, which ffmpeg reports with the server's description.
    assert b"already being published" in proc.stderr, proc.stderr[-500:]
    row = relay_rows(service, "owned")[0]
    assert row["State"] == "up" and row["Switches"] == 0

    # A play-triggered config for the same app does not start a V3 pull for this stream.
    server = {"RelaySourceProtocol": "rtmp", "RelaySourceDomain": f"127.0.0.1:{origin.rtmp_port}"}
    groups = [{"Group": "g", "Servers": [server]}]
    service.update_relay_source_v3({"Vhost": VHOST, "App": APP, "GroupDetails": groups})
    assert_plays(ffprobe, relay_node, "owned", protocols=("flv",))
    rows = service.describe_relay_status({"Vhost": VHOST})["Result"]["RelayStatusList"]
    assert [r["Type"] for r in rows if r["Stream"] == "owned"] == ["fixed"]


def test_fixed_relay_waits_for_a_publisher_to_leave(
    relay_node: NodeProcess, origin: NodeProcess, ffmpeg: str, ffprobe: str, sample_flv: Path
) -> None:
    """The stream is already published locally: the relay retries (busy), then takes over."""
    service = setup_domains(relay_node)
    push = ["-rtmp_tcurl", f"rtmp://{PUSH_DOMAIN}:{relay_node.rtmp_port}/{APP}"]
    with ffmpeg_publish(ffmpeg, sample_flv, relay_node.rtmp_url(APP, "taken"), extra=push) as publisher:
        deadline = time.monotonic() + 10
        while play_refused(ffprobe, relay_node, "taken"):
            assert time.monotonic() < deadline and publisher.poll() is None, "the local publisher is not live"
        create_fixed(service, "taken", [origin.rtmp_url(APP, "src")])
        row = wait_row(
            service, "taken", lambda r: r is not None and "busy" in str(r["LastError"]), 10, "busy reported"
        )
        assert row is not None and row["State"] in ("starting", "retrying")
        attempts = row["Attempts"]
        time.sleep(1.5)
        # Backoff, not a reconnect storm against the origin (backoff_max_s = 1 s here).
        assert relay_rows(service, "taken")[0]["Attempts"] - attempts <= 4
    wait_up(service, "taken", timeout=10)
    assert_plays(ffprobe, relay_node, "taken", protocols=("flv",))


def test_missing_ffmpeg_and_denied_origins_fail_only_their_task(
    node_factory: Any, origin: NodeProcess, ffprobe: str
) -> None:
    config = RELAY_CONFIG + 'ffmpeg_path = "/nonexistent/bin/ffmpeg"\ndeny_cidrs = ["127.0.0.2/32"]\n'
    node = node_factory("no-ffmpeg", config=config)
    service = setup_domains(node)
    create_fixed(service, "needs-ffmpeg", [f"srt://127.0.0.1:{free_port()}?streamid=x"])
    create_fixed(service, "denied", [f"rtmp://127.0.0.2:{origin.rtmp_port}/{APP}/src"])
    create_fixed(service, "fine", [origin.rtmp_url(APP, "src")])
    wait_up(service, "fine")
    row = wait_row(service, "needs-ffmpeg", lambda r: r is not None and bool(r["LastError"]), 5, "error")
    assert row is not None and "ffmpeg not found" in row["LastError"] and row["State"] != "up"
    row = wait_row(service, "denied", lambda r: r is not None and bool(r["LastError"]), 5, "error")
    assert row is not None and "policy" in row["LastError"] and row["State"] != "up"
    assert_plays(ffprobe, node, "fine", protocols=("flv",))
