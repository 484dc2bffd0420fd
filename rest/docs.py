"""The OpenAPI document and its two browsers (Swagger UI at /docs, ReDoc at /redoc)."""

from __future__ import annotations

from aiohttp import web

from hub import keys
from rest import responses
from rest.openapi import RouteTable

routes = RouteTable("docs")

_SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CartSnitch Hub API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", withCredentials: true});</script>
</body></html>"""

_REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CartSnitch Hub API</title></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>
</body></html>"""


@routes.get("/openapi.json", summary="This OpenAPI 3.1 document", auth="none", limit="none")
async def openapi_json(request: web.Request) -> web.Response:
    return responses.json(request.app[keys.openapi])


@routes.get("/docs", summary="Swagger UI", auth="none", limit="none", content_type="text/html")
async def swagger_ui(request: web.Request) -> web.Response:
    return web.Response(text=_SWAGGER, content_type="text/html")


@routes.get("/redoc", summary="ReDoc", auth="none", limit="none", content_type="text/html")
async def redoc(request: web.Request) -> web.Response:
    return web.Response(text=_REDOC, content_type="text/html")
