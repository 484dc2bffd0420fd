"""The OpenAPI document and its two browsers (Swagger UI at /docs, ReDoc at /redoc), served entirely by the hub.

CartSnitch is self-hosted, often on networks without internet access, so no asset comes from a CDN: Swagger UI and
ReDoc are the builds shipped by ``drf-spectacular-sidecar`` (pinned in pyproject; it tracks the npm releases of
``swagger-ui-dist`` and ``redoc`` monthly). That package's Python module imports Django, so the files are located
through its distribution metadata and the module is never imported."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from aiohttp import web

from channels.errors import ProblemType
from hub import keys
from hub.errors import AppError
from rest import responses
from rest.openapi import RouteTable

routes = RouteTable("docs")

_SIDECAR = "drf-spectacular-sidecar"
_BASE = "drf_spectacular_sidecar/static/drf_spectacular_sidecar/"
ASSETS = {
    "swagger-ui.css": (_BASE + "swagger-ui-dist/swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": (_BASE + "swagger-ui-dist/swagger-ui-bundle.js", "text/javascript"),
    "favicon-32x32.png": (_BASE + "swagger-ui-dist/favicon-32x32.png", "image/png"),
    "redoc.standalone.js": (_BASE + "redoc/bundles/redoc.standalone.js", "text/javascript"),
}
_OWN = Path(__file__).with_name("static")
OWN_ASSETS = {"swagger-init.js": (_OWN / "swagger-init.js", "text/javascript")}
# ReDoc 2 draws Redocly's logo from Redocly's CDN under its side menu, whatever its options say: the hub's copy
# draws an empty inline SVG instead, so the page asks nothing of another host (and the CSP has nothing to refuse).
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_SVG = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='0' height='0'/%3E"
PATCHES = {"redoc.standalone.js": ((_REDOC_LOGO, _EMPTY_SVG),)}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src 'self' blob:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)

_SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CartSnitch Hub API</title>
<link rel="icon" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/swagger-init.js"></script>
</body></html>"""

_REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CartSnitch Hub API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/docs/assets/favicon-32x32.png"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/docs/assets/redoc.standalone.js"></script>
</body></html>"""


@cache
def asset_path(name: str) -> Path | None:
    """Where a docs asset lives on disk (None when the name is not one, or the package is missing)."""
    if name in OWN_ASSETS:
        return OWN_ASSETS[name][0]
    if name not in ASSETS:
        return None
    try:
        path = Path(str(distribution(_SIDECAR).locate_file(ASSETS[name][0])))
    except PackageNotFoundError:
        return None
    return path if path.is_file() else None


@cache
def patched_asset(name: str, path: Path) -> bytes:
    """The hub's copy of a vendored file that would load something from another host."""
    body = path.read_bytes()
    for old, new in PATCHES[name]:
        body = body.replace(old, new)
    return body


def _page(html: str) -> web.Response:
    return web.Response(text=html, content_type="text/html", headers={"Content-Security-Policy": CSP})


@routes.get("/openapi.json", summary="This OpenAPI 3.1 document", auth="none", limit="none")
async def openapi_json(request: web.Request) -> web.Response:
    return responses.json(request.app[keys.openapi])


@routes.get("/docs", summary="Swagger UI", auth="none", limit="none", content_type="text/html")
async def swagger_ui(request: web.Request) -> web.Response:
    return _page(_SWAGGER)


@routes.get("/redoc", summary="ReDoc", auth="none", limit="none", content_type="text/html")
async def redoc(request: web.Request) -> web.Response:
    return _page(_REDOC)


@routes.get(
    "/docs/assets/{name}",
    summary="Swagger UI and ReDoc files (served by the hub: no CDN)",
    auth="none",
    limit="none",
    content_type="application/octet-stream",
    errors=(404,),
)
async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = asset_path(name)
    if path is None:
        raise AppError(ProblemType.NOT_FOUND, f"no docs asset {name[:100]!r}")
    headers = {"Content-Type": (OWN_ASSETS.get(name) or ASSETS[name])[1], "Cache-Control": "public, max-age=86400"}
    if name in PATCHES:
        return web.Response(body=patched_asset(name, path), headers=headers)
    if "Range" in request.headers:  # the file response stats the file again; only a range needs it here
        _check_range(request, path.stat().st_size)
    return web.FileResponse(path, headers=headers)


def _check_range(request: web.Request, size: int) -> None:
    """A Range that aiohttp's file response would answer with a bare 416 is a problem like every other error."""
    try:
        start = request.http_range.start
    except ValueError:
        start = size
    if start is not None and start >= size:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
