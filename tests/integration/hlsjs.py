"""hls.js in Debian's headless Chromium, driven by Playwright, for the HLS player tests.

hls.js comes from npm at test setup (`npm pack`, a pinned version whose integrity hash is
checked) into .cache/npm (gitignored): nothing is committed. Chromium is the system one
(`executable_path`), never a browser downloaded by `playwright install`. The test page is
served by the test on its own port, so the node's CORS headers are exercised too."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.conftest import REPO, in_ci
from tests.integration.chromium import CHROMIUM

HLSJS_VERSION = "1.6.19"
HLSJS_INTEGRITY = (
    "sha512-A//aZeaAgM5rgUCbTURD4gkfyw5Uag2/4Jky7CfDOukL/DN+P5DjbgK2BYteyP3/KnCkPfkGVkbLxQG2T0AbUQ=="
)
CACHE = REPO / ".cache" / "npm"
# Media plays without a user gesture (the page starts hls.js itself).
AUTOPLAY_FLAG = "--autoplay-policy=no-user-gesture-required"

PAGE = """<!doctype html><html><body><video id="v" muted playsinline></video>
<script src="/hls.min.js"></script>
<script>
const state = {errors: [], fatal: [], waits: [], playing: false, started: 0, samples: 0};
window.state = state;
const video = document.getElementById('v');
video.addEventListener('playing', () => {
  if (!state.playing) { state.started = Date.now(); }
  else if (state.waitStart) { state.waits.push(Date.now() - state.waitStart); state.waitStart = 0; }
  state.playing = true;
});
video.addEventListener('waiting', () => { if (state.playing) state.waitStart = Date.now(); });
const hls = new Hls(Object.assign({debug: false}, window.HLS_CONFIG || {}));
window.hls = hls;
hls.on(Hls.Events.ERROR, (e, d) => {
  state.errors.push(d.type + ':' + d.details);
  if (d.fatal) state.fatal.push(d.type + ':' + d.details);
});
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(e => state.errors.push('play:' + e)));
hls.loadSource(window.HLS_URL);
hls.attachMedia(video);
window.sample = () => ({
  t: video.currentTime,
  pd: hls.playingDate ? hls.playingDate.getTime() : null,
  now: Date.now(),
  playing: state.playing,
  fatal: state.fatal.slice(),
  errors: state.errors.slice(-5),
  waits: state.waits.slice(),
  waiting: state.waitStart ? Date.now() - state.waitStart : 0,
});
</script></body></html>"""


def _integrity_ok(data: bytes) -> bool:
    algo, _, digest = HLSJS_INTEGRITY.partition("-")
    return algo == "sha512" and base64.b64encode(hashlib.sha512(data).digest()).decode() == digest


def hlsjs_path() -> Path:
    """dist/hls.min.js of the pinned hls.js, fetched with npm once into the cache."""
    out = CACHE / f"hls.js-{HLSJS_VERSION}.min.js"
    if out.exists():
        return out
    npm = shutil.which("npm")
    if npm is None:
        message = "npm is not installed (scripts/ensure-sysdeps.sh installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    CACHE.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [npm, "pack", f"hls.js@{HLSJS_VERSION}", "--pack-destination", str(CACHE), "--silent"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=CACHE,
    )
    assert proc.returncode == 0, f"npm pack hls.js failed: {proc.stderr[-800:]}"
    tgz = CACHE / proc.stdout.strip().splitlines()[-1]
    data = tgz.read_bytes()
    assert _integrity_ok(data), f"hls.js {HLSJS_VERSION} from npm does not match the pinned integrity"
    with tarfile.open(tgz) as tar:
        member = tar.extractfile("package/dist/hls.min.js")
        assert member is not None
        out.write_bytes(member.read())
    tgz.unlink()
    return out


def require_chromium() -> str:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (scripts/ensure-sysdeps.sh installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


async def serve_page(port: int, hlsjs: Path, url: str, config: dict[str, Any]) -> web.AppRunner:
    import json

    page = PAGE.replace(
        '<script src="/hls.min.js"></script>',
        f'<script src="/hls.min.js"></script><script>window.HLS_URL={json.dumps(url)};'
        f"window.HLS_CONFIG={json.dumps(config)};</script>",
    )
    app = web.Application()

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def script(_: web.Request) -> web.FileResponse:
        return web.FileResponse(hlsjs)

    app.router.add_get("/", index)
    app.router.add_get("/hls.min.js", script)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@dataclass
class PlayReport:
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        return self.samples[-1]

    def advanced_s(self) -> float:
        return float(self.last["t"] - self.samples[0]["t"])

    def latencies(self) -> list[float]:
        return [(s["now"] - s["pd"]) / 1000 for s in self.samples if s["pd"]]


async def watch(page: Any, seconds: float, interval: float = 0.5) -> PlayReport:
    """Sample the player every `interval` for `seconds` (bounded)."""
    report = PlayReport()
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / interval) + 2):
        report.samples.append(await page.evaluate("window.sample()"))
        if time.monotonic() >= deadline:
            break
        await page.wait_for_timeout(interval * 1000)
    return report


async def wait_playing(page: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = await page.evaluate("window.sample()")
        assert not s["fatal"], s
        if s["playing"] and s["t"] > 0:
            return
        await page.wait_for_timeout(200)
    raise AssertionError(f"hls.js did not start playing within {timeout}s: {s}")
