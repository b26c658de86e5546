"""ISSUE-8 class 6: HLS sources must obey the relay source policy.

Fixed (V4) relays are created through the signed API with HLS origins that reach a
denied address in ways the policy check of the URL's host does not see:
- `0.0.0.0` (the local host on Linux), with the default policy;
- the IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) forms of a
  denied address (169.254.169.254, denied by default);
- an allowed host whose playlist redirects to a denied host (127.0.0.2, denied by config);
- an allowed host whose playlist lists segments on the denied host.
Each must be refused by CreateRelaySourceV4 or fail with a policy error in
DescribeRelayStatus; a denied host that listens must never get a request, and no such
relay may ever come up. A relay from an allowed HLS origin still works.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.adversarial.conftest import HarnessFactory
from tests.adversarial.harness import ADV_CONFIG, APP, PULL_DOMAIN, Harness, relay_rows
from tests.conftest import free_port, stop_process
from tests.integration.test_relay_v4_sources import looping_ffmpeg

from liverelay.sdk.errors import LiveAPIError

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(120)]

DENIED_HOST = "127.0.0.2"
# The default deny list plus the loopback address the "denied host" listens on.
DENY_CONFIG = ADV_CONFIG + (
    'deny_cidrs = ["169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128", '
    f'"{DENIED_HOST}/32"]\n'
)
DECIDE_S = 25.0  # an HLS pull that is allowed comes up well within this


@dataclass
class Site:
    """One HTTP server of the origin; counts the requests it answered."""

    host: str
    port: int
    requests: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None


class HlsOrigins:
    """A live HLS playlist written by ffmpeg, served by three sites:
    allowed (127.0.0.1): /hls/*, /redirect.m3u8 (302 to the denied site), /foreign.m3u8
    (the playlist with its segments on the denied site); zero (127.0.0.1, reached as
    0.0.0.0): /hls/*; denied (DENIED_HOST): /hls/*."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.allowed = Site("127.0.0.1", free_port())
        self.zero = Site("127.0.0.1", free_port())
        self.denied = Site(DENIED_HOST, free_port())

    def url(self, site: Site, path: str, host: str | None = None) -> str:
        return f"http://{host or site.host}:{site.port}{path}"

    async def start(self) -> None:
        for site in (self.allowed, self.zero, self.denied):
            app = web.Application()
            app.router.add_get("/hls/{file}", self._file)
            if site is self.allowed:
                app.router.add_get("/redirect.m3u8", self._redirect)
                app.router.add_get("/foreign.m3u8", self._foreign)
            app[SITE_KEY] = site
            site.runner = web.AppRunner(app, access_log=None)
            await site.runner.setup()
            await web.TCPSite(site.runner, site.host, site.port).start()

    async def close(self) -> None:
        for site in (self.allowed, self.zero, self.denied):
            if site.runner is not None:
                await site.runner.cleanup()

    def _count(self, request: web.Request) -> None:
        request.app[SITE_KEY].requests.append(request.path)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        path = self.directory / request.match_info["file"]
        if path.parent != self.directory or not path.is_file():
            return web.Response(status=404)
        return web.Response(body=path.read_bytes())

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        raise web.HTTPFound(self.url(self.denied, "/hls/index.m3u8"))

    async def _foreign(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        playlist = (self.directory / "index.m3u8").read_text()
        lines = [
            self.url(self.denied, f"/hls/{line}") if line and not line.startswith("#") else line
            for line in playlist.splitlines()
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="application/vnd.apple.mpegurl")


SITE_KEY: web.AppKey[Site] = web.AppKey("adv_site", Site)


@contextlib.contextmanager
def hls_origins(harness: Harness, ffmpeg: str, sample: Path, directory: Path) -> Iterator[HlsOrigins]:
    directory.mkdir(parents=True, exist_ok=True)
    hls = ["-hls_time", "1", "-hls_list_size", "4", "-hls_flags", "delete_segments+omit_endlist"]
    writer = looping_ffmpeg(ffmpeg, sample, ["-f", "hls", *hls, str(directory / "index.m3u8")])
    origins = HlsOrigins(directory)
    try:
        playlist = directory / "index.m3u8"
        deadline = time.monotonic() + 15
        while not (playlist.exists() and playlist.read_text().count("#EXTINF") >= 2):
            assert time.monotonic() < deadline, "ffmpeg wrote no live playlist"
            assert writer.poll() is None, "the HLS ffmpeg died"
            time.sleep(0.1)
        harness.monitor.run(origins.start())
        yield origins
    finally:
        harness.monitor.run(origins.close())
        stop_process(writer)


def _create(harness: Harness, stream: str, url: str) -> str | None:
    """CreateRelaySourceV4; None when accepted, else the refusal (code: message)."""
    body = {"Domain": PULL_DOMAIN, "App": APP, "Stream": stream, "SrcAddrS": [url]}
    try:
        with harness.api() as svc:
            svc.create_relay_source_v4(body)
    except LiveAPIError as exc:
        return str(exc)
    return None


def _delete_all(harness: Harness, streams: list[str]) -> None:
    with harness.api() as svc:
        for stream in streams:
            svc.delete_relay_source_v4({"Domain": PULL_DOMAIN, "App": APP, "Stream": stream})


def _rows(harness: Harness) -> dict[str, dict[str, Any]]:
    return {str(r["Stream"]): r for r in relay_rows(harness.node, "fixed")}


def _decided(row: dict[str, Any] | None) -> bool:
    """Up, or failed at least twice (an attempt that would reach a denied host was made)."""
    return row is not None and (row["State"] == "up" or (bool(row["LastError"]) and row["Attempts"] >= 2))


def _watch(harness: Harness, streams: list[str], control: str) -> dict[str, dict[str, Any]]:
    """Poll status until every relay and the control are decided (bounded)."""
    deadline = time.monotonic() + DECIDE_S
    rows: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        rows = _rows(harness)
        if all(_decided(rows.get(s)) for s in [*streams, control]):
            break
        time.sleep(0.3)
    return rows


def _summary(rows: dict[str, dict[str, Any]]) -> str:
    return "\n".join(
        f"  {name}: {row['State']}, attempts {row['Attempts']}, LastError {str(row['LastError'])[:200]!r}"
        for name, row in sorted(rows.items())
    )


def test_zero_address_and_embedded_ipv4_forms(
    harness_factory: HarnessFactory, ffmpeg: str, sample_flv: Path, tmp_path: Path
) -> None:
    harness = harness_factory()
    with hls_origins(harness, ffmpeg, sample_flv, tmp_path / "hls") as hls:
        attacks = {
            "zero": hls.url(hls.zero, "/hls/index.m3u8", host="0.0.0.0"),
            "v4compat": hls.url(hls.allowed, "/hls/index.m3u8", host="[::169.254.169.254]"),
            "nat64": hls.url(hls.allowed, "/hls/index.m3u8", host="[64:ff9b::169.254.169.254]"),
            "6to4": hls.url(hls.allowed, "/hls/index.m3u8", host="[2002:a9fe:a9fe::1]"),
        }
        with harness.attack_guard("HLS origins at denied addresses", max_log_lines=400) as guard:
            refused = {name: _create(harness, name, url) for name, url in attacks.items()}
            # Controls: an allowed HLS origin plays; an IPv6 literal as such is accepted.
            assert _create(harness, "control", hls.url(hls.allowed, "/hls/index.m3u8")) is None
            assert (
                _create(harness, "doc6", hls.url(hls.allowed, "/hls/index.m3u8", host="[2001:db8::1]"))
                is None
            )
            pending = [name for name, why in refused.items() if why is None]
            rows = _watch(harness, pending, "control")
            guard.note(f"refused at creation: {refused}\nstatus:\n{_summary(rows)}")
            guard.note(f"requests to the 0.0.0.0 site: {hls.zero.requests[:5]}")
            _delete_all(harness, [*pending, "control", "doc6"])
        assert not hls.zero.requests, (
            f"a pull from 0.0.0.0 reached the local host: {hls.zero.requests[:5]}\n{_summary(rows)}"
        )
        not_policy = [
            name
            for name in pending
            if "policy" not in str((rows.get(name) or {}).get("LastError", "")) or rows[name]["State"] == "up"
        ]
        assert not not_policy, (
            f"relays to denied addresses not stopped by the policy: {not_policy}\n{_summary(rows)}"
        )
        assert rows.get("control", {}).get("State") == "up", (
            f"the allowed HLS relay did not come up:\n{_summary(rows)}"
        )


def test_redirects_and_segments_to_a_denied_host(
    harness_factory: HarnessFactory, ffmpeg: str, sample_flv: Path, tmp_path: Path
) -> None:
    harness = harness_factory(config=DENY_CONFIG)
    with hls_origins(harness, ffmpeg, sample_flv, tmp_path / "hls") as hls:
        attacks = {
            "redirect": hls.url(hls.allowed, "/redirect.m3u8"),
            "foreign": hls.url(hls.allowed, "/foreign.m3u8"),
        }
        with harness.attack_guard("HLS playlists pointing at a denied host", max_log_lines=300) as guard:
            refused = {name: _create(harness, name, url) for name, url in attacks.items()}
            assert _create(harness, "control", hls.url(hls.allowed, "/hls/index.m3u8")) is None
            pending = [name for name, why in refused.items() if why is None]
            rows = _watch(harness, pending, "control")
            guard.note(f"refused at creation: {refused}\nstatus:\n{_summary(rows)}")
            guard.note(f"requests to the denied host: {hls.denied.requests[:5]}")
            _delete_all(harness, [*pending, "control"])
        assert not hls.denied.requests, (
            f"pulls reached the denied host {DENIED_HOST}: {hls.denied.requests[:5]}\n{_summary(rows)}"
        )
        up = [name for name in pending if rows.get(name, {}).get("State") == "up"]
        assert not up, f"relays through a denied host came up: {up}\n{_summary(rows)}"
        assert rows.get("control", {}).get("State") == "up", (
            f"the allowed HLS relay did not come up:\n{_summary(rows)}"
        )
