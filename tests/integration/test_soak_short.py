"""The endurance soak (bench/soak.py), one minute and small: it fails on a leak.

One real node under 100 churning viewers (RTMP + HTTP-FLV, HLS when served), 10 native
fixed relays plus one HLS and one SRT, play-triggered relays from two nginx-rtmp origins
one of which is killed and restarted every 20 s, and API writes/reads at the full soak's
rates. Expected: once every viewer and relay is gone the node's open fds and asyncio
tasks are back to their baseline; RSS after warm-up grows less than a generous 25 %; no
viewer error beyond the injected origin kills; no API error; fixed relays up ≥ 95 % of
their windows (the 10-minute soak's goal is 99.9 %; this run is short and shares CPU).
"""

from __future__ import annotations

import asyncio
import shutil

import pytest
from bench.soak import SoakParams, run
from tests.conftest import needs_nginx_rtmp, require_tool


@needs_nginx_rtmp
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_short_soak_has_no_leak() -> None:
    require_tool("ffmpeg", install="apt-get install ffmpeg")
    assert shutil.which("ffprobe")
    params = SoakParams(
        minutes=1.0,
        viewers=100,
        fixed=10,
        hls_fixed=1,
        srt_fixed=1,
        v3_streams=2,
        v3_viewers=5,
        churn_s=10.0,
        flap_s=20.0,
        warmup_s=15.0,
        settle_timeout_s=60.0,
    )
    r = asyncio.run(run(params))
    report = {k: v for k, v in r.items() if k not in ("samples", "params")}
    assert r["baseline"]["tasks"] is not None, "the node exposes no liverelay_asyncio_tasks gauge"
    assert r["settle"]["fds_leaked"] == 0, report
    assert r["settle"]["tasks_leaked"] == 0, report
    assert r["rss_growth_pct"] is not None and r["rss_growth_pct"] < 25.0, report
    assert r["viewer_errors"] == 0, report
    assert r["viewer_joins"] > params.viewers and r["viewer_leaves"] > 0, report  # churn happened
    assert r["flaps"] >= 2, report
    assert r["api_errors"] == 0, report
    assert r["api_ok"] > 1000, report
    assert r["fixed_availability_pct"] is not None and r["fixed_availability_pct"] >= 95.0, report
