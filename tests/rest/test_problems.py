from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from hub.app import create_app
from hub.settings import Settings

Client = TestClient[Any, Any]


async def test_unknown_route_is_a_404_problem(client: Client) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = await response.json()
    assert body["type"].endswith("/not-found") and body["code"] == "NOT_FOUND"
    assert body["instance"] == "/api/v1/nothing-here"


async def test_wrong_method_is_a_405_problem_with_allow(client: Client) -> None:
    response = await client.delete("/health")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    body = await response.json()
    assert body["type"].endswith("/method-not-allowed")


async def test_unexpected_errors_are_500_problems_without_trace(aiohttp_client: Any, settings: Settings) -> None:
    app = create_app(settings)

    async def explode(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals: password=hunter2")

    app.router.add_get("/explode", explode)
    client = await aiohttp_client(app)
    response = await client.get("/explode")
    assert response.status == 500
    assert response.headers["Content-Type"].startswith("application/problem+json")
    text = await response.text()
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
    body = await response.json()
    assert body["code"] == "INTERNAL_ERROR" and body["type"].endswith("/internal")


async def test_cors_preflight_allows_configured_origin_with_credentials(client: Client) -> None:
    response = await client.options(
        "/auth/me",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    denied = await client.options(
        "/auth/me", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert "Access-Control-Allow-Origin" not in denied.headers
