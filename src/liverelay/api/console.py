"""The web console's static files on the API listener, at /console/.

The console is one more client of the API: static files only, no session and no second
way in (every read and write it makes is a signed API action). Its files live in the
package (src/liverelay/console/); its two third-party players come from npm
(package.json + package-lock.json, installed by `npm ci` into node_modules, never
committed) and are served from /console/vendor/<name>, each name mapped to one file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from ..config import Settings

log = logging.getLogger("liverelay.api.console")

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
# node_modules beside pyproject.toml in a source checkout (`pip install -e`, `make serve`).
DEFAULT_VENDOR_DIR = Path(__file__).resolve().parents[3] / "node_modules"

# /console/vendor/<name> -> file under node_modules: only these files are served.
VENDOR_FILES: dict[str, str] = {
    "hls.js": "hls.js/dist/hls.min.js",
    "mpegts.js": "mpegts.js/dist/mpegts.js",
}

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}

# Scripts only from the node itself; media and the HTTP-FLV/HLS fetches may go to the
# node's media listener (another port, so another origin); nothing else.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: http: https:; connect-src 'self' http: https:; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file_response(path: Path) -> web.StreamResponse:
    content_type = _TYPES.get(path.suffix, "application/octet-stream")
    headers = dict(HEADERS)
    headers["Content-Type"] = content_type + ("; charset=utf-8" if content_type.startswith("text/") else "")
    return web.FileResponse(path, headers=headers)


def _not_found(what: str) -> web.Response:
    return web.Response(status=404, text=f"{what} not found\n", headers=HEADERS)


def add_console_routes(app: web.Application, settings: Settings) -> None:
    """GET /console/ (index.html), /console/<file>, /console/vendor/<name>."""
    if not settings.api.console:
        return
    configured = settings.api.console_vendor_dir
    vendor_dir = Path(configured) if configured else DEFAULT_VENDOR_DIR
    files = {p.name: p for p in CONSOLE_DIR.iterdir() if p.is_file()} if CONSOLE_DIR.is_dir() else {}

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/console/")

    async def index(request: web.Request) -> web.StreamResponse:
        page = files.get("index.html")
        return _file_response(page) if page else _not_found("the console")

    async def static(request: web.Request) -> web.StreamResponse:
        # Only names listed at start-up: no path from the request ever reaches the disk.
        page = files.get(request.match_info["name"])
        return _file_response(page) if page else _not_found("file")

    async def vendor(request: web.Request) -> web.StreamResponse:
        relative = VENDOR_FILES.get(request.match_info["name"])
        if relative is None:
            return _not_found("file")
        path = vendor_dir / relative
        if not path.is_file():
            log.warning("console: %s is missing (run `npm ci` in the source tree)", path)
            return _not_found(f"{relative} (run `npm ci`)")
        return _file_response(path)

    app.router.add_get("/console", redirect)
    app.router.add_get("/console/", index)
    app.router.add_get("/console/vendor/{name}", vendor)
    app.router.add_get("/console/{name}", static)


__all__ = ["CONSOLE_DIR", "VENDOR_FILES", "add_console_routes"]
