"""nginx-rtmp as a foreign origin of our edge: ffmpeg publishes to nginx, a V3 config on
the edge points at it, and ffprobe plays the stream from the edge over RTMP and HTTP-FLV."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import NodeProcess, ffmpeg_publish, free_port, start_node, stop_process, wait_port
from tests.integration.relay_helpers import (
    EDGE_CONFIG,
    FlvViewer,
    ffprobe_video,
    register_vhost,
    relay_status,
    rtmp_server,
    set_v3,
)

NGINX_RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def nginx_origin(tmp_path: Path) -> Iterator[int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or not NGINX_RTMP_MODULE.exists():
        pytest.fail("nginx with libnginx-mod-rtmp is required (apt-get install nginx libnginx-mod-rtmp)")
    port = free_port()
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    temp = {name: prefix / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
load_module {NGINX_RTMP_MODULE};
daemon off;
master_process off;
error_log stderr;
pid {prefix}/nginx.pid;
events {{}}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application live {{
            live on;
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
}}
"""
    )
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(prefix)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, timeout=10)
        yield port
    finally:
        stop_process(proc)
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[NodeProcess]:
    node = start_node(tmp_path / "edge", config=EDGE_CONFIG)
    try:
        register_vhost(node)
        yield node
    finally:
        node.kill(signal.SIGTERM)


async def test_nginx_rtmp_origin_is_playable_through_the_edge(
    nginx_origin: int, edge: NodeProcess, ffmpeg: str, ffprobe: str, sample_flv: Path
) -> None:
    set_v3(edge, [rtmp_server(nginx_origin)])
    with ffmpeg_publish(ffmpeg, sample_flv, f"rtmp://127.0.0.1:{nginx_origin}/live/s"):
        await asyncio.sleep(1.0)  # let the publish reach nginx
        # Cold: this viewer's play starts the pull (nginx-rtmp has no GOP cache: ~half a GOP).
        viewer = await FlvViewer(edge.flv_url("live", "s")).start()
        try:
            await viewer.wait_video(30, timeout=10)
            viewer.assert_monotonic()
            delay_ms = viewer.first_video_delay() * 1000
            print(f"\nnginx-rtmp origin: edge cold start to first video frame {delay_ms:.0f} ms")
            # Warm: real players on both edge protocols decode it.
            for url in (edge.rtmp_url("live", "s"), edge.flv_url("live", "s")):
                info = await asyncio.to_thread(ffprobe_video, ffprobe, url)
                assert (info["codec_name"], info["width"], info["height"]) == ("h264", 640, 360), info
                assert info["frames"] > 10, info
        finally:
            await viewer.close()
        rows = relay_status(edge)
        assert len(rows) == 1 and rows[0]["SourceUrl"].startswith(f"rtmp://127.0.0.1:{nginx_origin}/live/s")
