"""The live public dashboard at ``/``: static files shipped in ``rest/static/dashboard`` (no build step, nothing from
a CDN) under a strict Content-Security-Policy. The page reads the public REST routes and the public SSE stream."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from channels.errors import ProblemType
from hub.errors import AppError
from rest.openapi import RouteTable

routes = RouteTable("dashboard")

ASSET_PREFIX = "/dashboard/"
INDEX = "index.html"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    version: str

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def _asset(name: str, body: bytes) -> Asset:
    suffix = name[name.rfind(".") :]
    return Asset(body, _CONTENT_TYPES[suffix], hashlib.blake2b(body, digest_size=8).hexdigest())


@functools.cache
def assets() -> dict[str, Asset]:
    """The dashboard's files by name; the page links each one with its content hash (``?v=``), so a browser
    keeps an asset for a year and still gets the new one right after an upgrade."""
    folder = resources.files("rest").joinpath("static", "dashboard")
    found = {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and entry.name[entry.name.rfind(".") :] in _CONTENT_TYPES
    }
    out = {name: _asset(name, body) for name, body in found.items() if name != INDEX}
    page = found[INDEX].decode()
    for name, asset in out.items():
        page = page.replace(f'"{ASSET_PREFIX}{name}"', f'"{ASSET_PREFIX}{name}?v={asset.version}"')
    out[INDEX] = _asset(INDEX, page.encode())
    return out


def _respond(request: web.Request, asset: Asset, cache_control: str, headers: dict[str, str]) -> web.Response:
    out = {"ETag": asset.etag, "Cache-Control": cache_control, **_SECURITY_HEADERS, **headers}
    if asset.etag in {tag.strip().removeprefix("W/") for tag in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=out)
    return web.Response(body=asset.body, headers={**out, "Content-Type": asset.content_type})


@routes.get(
    "/",
    summary="The live public dashboard (price trends, store comparison, basket index against CPI)",
    auth="none",
    limit="none",
    content_type="text/html",
)
async def get_dashboard(request: web.Request) -> web.Response:
    return _respond(request, assets()[INDEX], "no-cache", {"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@routes.get(
    ASSET_PREFIX + "{name}",
    summary="A file of the dashboard (script, style sheet, icon)",
    auth="none",
    limit="none",
    content_type="application/octet-stream",
    errors=(404,),
    path_params={"name": "the file name, e.g. app.js"},
)
async def get_dashboard_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    asset = assets().get(name) if name != INDEX else None
    if asset is None:
        raise AppError(ProblemType.NOT_FOUND, f"no dashboard file {name!r}")
    cache_control = _IMMUTABLE if request.query.get("v") == asset.version else "no-cache"
    return _respond(request, asset, cache_control, {})
