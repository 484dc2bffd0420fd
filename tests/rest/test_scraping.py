"""Store syncs: the demo driver when no ReceiptWitness is configured, forwarding (and its failures) when it is."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub import keys
from hub.app import create_app
from hub.settings import Settings
from hub.store.models import UserStoreAccount
from tests import factories

Client = TestClient[Any, Any]


async def _connected_user(app: web.Application, slug: str = "kroger") -> tuple[Any, Any]:
    async with app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        store = await factories.create_store(session, slug=slug, name=slug.title())
        session.add(UserStoreAccount(user_id=user.id, store_id=store.id, status="active"))
    return user, store


async def _events(client: Client, headers: dict[str, str], count: int) -> list[dict[str, Any]]:
    after = None
    events: list[dict[str, Any]] = []
    while len(events) < count:
        params = {"wait": "5"} | ({"after": after} if after else {})
        page = await (await client.get("/api/v1/me/events", params=params, headers=headers)).json()
        events.extend(page["events"])
        after = page["next"]
    return events


async def test_demo_sync_walks_the_job_through_its_states(
    aiohttp_client: Callable[..., Awaitable[Client]], settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(demo_sync=True)))
    user, _store = await _connected_user(client.app)
    headers = await factories.auth_headers(client.app, user.id)
    response = await client.post("/api/v1/scraping/kroger/sync", headers=headers)
    assert response.status == 202
    accepted = await response.json()
    assert accepted["status"] == "queued" and accepted["mode"] == "demo"
    assert "demo" in accepted["message"]
    again = await client.post("/api/v1/scraping/kroger/sync", headers=headers)
    assert again.status == 409
    events = await _events(client, headers, 6)
    statuses = [e["payload"]["status"] for e in events]
    assert statuses == ["queued", "running", "running", "running", "running", "succeeded"]
    assert {e["payload"]["job_id"] for e in events} == {accepted["job_id"]}
    progress = [e["payload"]["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    status = await (await client.get("/api/v1/scraping/status", headers=headers)).json()
    assert status[0]["store_slug"] == "kroger"
    assert status[0]["status"] == "succeeded"
    assert status[0]["last_sync_at"] is not None
    assert status[0]["items_synced"] == events[-1]["payload"]["items_synced"]


async def test_status_tells_a_store_synced_outside_the_hub_from_one_never_synced(client: Client) -> None:
    user, _kroger = await _connected_user(client.app)
    async with client.app[keys.sessionmaker].begin() as session:
        target = await factories.create_store(session, slug="target", name="Target")
        session.add(
            UserStoreAccount(
                user_id=user.id,
                store_id=target.id,
                status="active",
                last_sync_at=datetime(2026, 11, 28, 8, 4, tzinfo=UTC),
            )
        )
    headers = await factories.auth_headers(client.app, user.id)
    response = await client.get("/api/v1/scraping/status", headers=headers)
    assert response.status == 200
    by_slug = {row["store_slug"]: row for row in await response.json()}
    assert by_slug["kroger"]["status"] == "never" and by_slug["kroger"]["last_sync_at"] is None
    assert by_slug["kroger"]["progress"] == 0.0
    assert by_slug["target"]["status"] == "succeeded" and by_slug["target"]["progress"] == 1.0
    assert by_slug["target"]["last_sync_at"] == "2026-11-28T08:04:00Z" and by_slug["target"]["job_id"] is None


async def test_sync_errors(client: Client) -> None:
    user, _store = await _connected_user(client.app)
    headers = await factories.auth_headers(client.app, user.id)
    assert (await client.post("/api/v1/scraping/kroger/sync")).status == 401
    assert (await client.post("/api/v1/scraping/nosuchstore/sync", headers=headers)).status == 404
    async with client.app[keys.sessionmaker].begin() as session:
        await factories.create_store(session, slug="target", name="Target")
    not_connected = await client.post("/api/v1/scraping/target/sync", headers=headers)
    assert not_connected.status == 409
    disabled = await client.post("/api/v1/scraping/kroger/sync", headers=headers)  # no ReceiptWitness, no demo
    assert disabled.status == 503
    assert "CARTSNITCH_RECEIPTWITNESS_URL" in (await disabled.json())["detail"]


@pytest.fixture
async def receiptwitness(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> tuple[TestServer, list[Any], dict[str, float]]:
    """A stand-in for ReceiptWitness (an external service): records calls, answers as told."""
    calls: list[Any] = []
    behaviour = {"status": 202, "delay": 0.0}

    async def sync(request: web.Request) -> web.Response:
        calls.append((request.match_info["slug"], request.headers.get("X-Service-Key"), await request.json()))
        await asyncio.sleep(behaviour["delay"])
        return web.json_response({"accepted": True}, status=int(behaviour["status"]))

    app = web.Application()
    app.router.add_post("/sync/{slug}", sync)
    return await aiohttp_server(app), calls, behaviour


async def test_sync_is_forwarded_to_receiptwitness(
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    receiptwitness: tuple[TestServer, list[Any], dict[str, float]],
) -> None:
    upstream, calls, behaviour = receiptwitness
    client = await aiohttp_client(
        create_app(
            settings.with_overrides(
                receiptwitness_url=str(upstream.make_url("")).rstrip("/"), upstream_timeout_seconds=0.5
            )
        )
    )
    user, _store = await _connected_user(client.app)
    headers = await factories.auth_headers(client.app, user.id)
    ok = await client.post("/api/v1/scraping/kroger/sync", headers=headers)
    assert ok.status == 202
    job_id = (await ok.json())["job_id"]
    assert calls == [("kroger", settings.service_key, {"user_id": user.id, "job_id": job_id})]

    async with client.app[keys.sessionmaker].begin() as session:  # let the next sync start
        from sqlalchemy import update

        from hub.store.models import SyncJob

        await session.execute(update(SyncJob).values(status="succeeded"))
    behaviour["status"] = 500
    refused = await client.post("/api/v1/scraping/kroger/sync", headers=headers)
    assert refused.status == 502
    assert (await refused.json())["code"] == "BAD_GATEWAY"

    behaviour.update(status=202, delay=2.0)
    slow = await client.post("/api/v1/scraping/kroger/sync", headers=headers)
    assert slow.status == 504
    events = await _events(client, headers, 5)
    assert [e["payload"]["status"] for e in events] == ["queued", "queued", "failed", "queued", "failed"]


async def test_sync_fails_cleanly_when_receiptwitness_is_down(
    aiohttp_client: Callable[..., Awaitable[Client]], settings: Settings
) -> None:
    from tests.services import free_port

    client = await aiohttp_client(
        create_app(settings.with_overrides(receiptwitness_url=f"http://127.0.0.1:{free_port()}"))
    )
    user, _store = await _connected_user(client.app)
    response = await client.post(
        "/api/v1/scraping/kroger/sync", headers=await factories.auth_headers(client.app, user.id)
    )
    assert response.status == 503
    assert response.headers["Content-Type"].startswith("application/problem+json")
