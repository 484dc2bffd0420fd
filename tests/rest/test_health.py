from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from hub.app import create_app
from hub.settings import Settings
from tests.services import free_port

Client = TestClient[Any, Any]


async def test_health(client: Client) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"
    # the service, not the versions of Python and aiohttp it runs on
    assert response.headers["Server"] == "cartsnitch-hub"


async def test_ready_checks_database_and_redis(client: Client, settings: Settings) -> None:
    response = await client.get("/ready")
    assert response.status == 200
    checks = (await response.json())["checks"]
    assert checks["database"] == "ok"
    assert checks["redis"] == ("ok" if settings.redis_url else "not configured (in-process broker)")


async def test_ready_is_503_when_redis_is_down(aiohttp_client: Any, settings: Settings) -> None:
    down = settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(create_app(down))
    response = await client.get("/ready")
    assert response.status == 503
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = await response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] != "ok"
    assert body["code"] == "SERVICE_UNAVAILABLE"


async def test_ready_is_503_when_the_database_is_down(aiohttp_client: Any, settings: Settings) -> None:
    down = settings.with_overrides(database_url=f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    client = await aiohttp_client(create_app(down))
    response = await client.get("/ready")
    assert response.status == 503
    assert (await response.json())["checks"]["database"] != "ok"


async def test_metrics_are_prometheus_text(client: Client) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'hub_http_requests_total{method="GET",route="/health",status="200"}' in text
    assert "hub_socket_connections" in text
