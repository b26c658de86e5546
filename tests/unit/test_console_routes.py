"""/console/ routes: the console's own files by name, the npm files by their fixed names
only, security headers, and the API's catch-all untouched."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from liverelay.api.console import CONSOLE_DIR, VENDOR_FILES, add_console_routes
from liverelay.config import Settings


async def client_for(settings: Settings) -> TestClient:
    app = web.Application()
    add_console_routes(app, settings)

    async def api(request: web.Request) -> web.Response:
        return web.Response(text="api")

    app.router.add_route("*", "/{tail:.*}", api)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_console_files_and_headers(tmp_path: Path) -> None:
    vendor = tmp_path / "node_modules"
    for relative in VENDOR_FILES.values():
        (vendor / relative).parent.mkdir(parents=True, exist_ok=True)
        (vendor / relative).write_text("/* vendor */")
    settings = Settings()
    settings.api.console_vendor_dir = str(vendor)
    client = await client_for(settings)
    try:
        index = await client.get("/console/")
        assert index.status == 200 and "liverelay console" in await index.text()
        assert index.headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in index.headers["Content-Security-Policy"]
        assert index.headers["X-Content-Type-Options"] == "nosniff"
        for name in ("app.js", "signer.js", "style.css"):
            assert (CONSOLE_DIR / name).is_file()
            resp = await client.get(f"/console/{name}")
            assert resp.status == 200, name
        assert (await client.get("/console/signer.js")).headers["Content-Type"].startswith("text/javascript")
        redirect = await client.get("/console", allow_redirects=False)
        assert redirect.status == 302 and redirect.headers["Location"] == "/console/"
        hls = await client.get("/console/vendor/hls.js")
        assert hls.status == 200 and await hls.text() == "/* vendor */"
        # Only the listed names: no other file of node_modules, no path out of the console.
        for path in (
            "/console/vendor/package.json",
            "/console/vendor/..%2Fhls.js%2Fpackage.json",
            "/console/..%2F..%2Fconfig.py",
            "/console/nothing.js",
        ):
            assert (await client.get(path)).status == 404, path
        # Everything else is still the API's.
        assert await (await client.get("/?Action=X")).text() == "api"
    finally:
        await client.close()


async def test_missing_npm_files_and_console_off(tmp_path: Path) -> None:
    settings = Settings()
    settings.api.console_vendor_dir = str(tmp_path / "empty")
    client = await client_for(settings)
    try:
        missing = await client.get("/console/vendor/mpegts.js")
        assert missing.status == 404 and "npm ci" in await missing.text()
    finally:
        await client.close()
    settings.api.console = False
    client = await client_for(settings)
    try:
        assert await (await client.get("/console/")).text() == "api"
    finally:
        await client.close()
