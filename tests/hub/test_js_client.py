"""Protocol compatibility with the official JavaScript client (npm socket.io-client), over every ingest path."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from channels.publish import publish
from hub import keys
from hub.settings import Settings
from tests import factories
from tests.jsclient import JsClient

pytestmark = pytest.mark.node


def _payload(user_id: str, job: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "store_slug": "kroger",
        "job_id": job,
        "status": "running",
        "progress": 0.25,
        "items_synced": 3,
        "message": f"via {job}",
    }


async def _cli_publish(settings: Settings, url: str, payload: dict[str, Any]) -> str:
    env = {
        **os.environ,
        "CARTSNITCH_DEV_MODE": "false",
        "CARTSNITCH_JWT_SECRET_KEY": settings.jwt_secret_key,
        "CARTSNITCH_SERVICE_KEY": settings.service_key or "",
        "CARTSNITCH_FERNET_KEY": settings.fernet_key or "",
        "CARTSNITCH_DATABASE_URL": settings.database_url,
    }
    env.pop("CARTSNITCH_REDIS_URL", None)
    env.pop("REDIS_URL", None)
    if settings.redis_url:
        env["CARTSNITCH_REDIS_URL"] = settings.redis_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "publish",
        "cartsnitch.sync.progress",
        "--payload",
        json.dumps(payload),
        "--url",
        url,
        "--service",
        "cli",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"], ["polling"]])
async def test_js_client_receives_events_from_every_ingest_path(
    server: TestServer, settings: Settings, transports: list[str]
) -> None:
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    token = await factories.access_token(server.app, user.id)
    url = str(server.make_url("")).rstrip("/")
    paths = ["http", "cli"] + (["channels", "legacy"] if settings.redis_url else [])
    client = await JsClient.start(
        url, f"/users/{user.id}", auth={"token": token}, transports=transports, events=len(paths), timeoutMs=20000
    )
    try:
        connected = await client.until("connect")
        assert connected["transport"] in transports
        ids: list[str] = []
        async with ClientSession() as http:
            response = await http.post(
                f"{url}/internal/events",
                headers={"X-Service-Key": settings.service_key or ""},
                json={
                    "event_type": "cartsnitch.sync.progress",
                    "payload": _payload(user.id, "http"),
                    "service": "receiptwitness",
                },
            )
            assert response.status == 202, await response.text()
            ids.append((await response.json())["id"])
        ids.append(await _cli_publish(settings, url, _payload(user.id, "cli")))
        if settings.redis_url:
            redis = Redis.from_url(settings.redis_url)
            try:
                ids.append(
                    await publish(
                        redis, "cartsnitch.sync.progress", _payload(user.id, "channels"), service="receiptwitness"
                    )
                )
                legacy = {
                    "event_type": "cartsnitch.sync.progress",
                    "timestamp": "2026-11-26T12:00:00+00:00",
                    "service": "receiptwitness",
                    "payload": _payload(user.id, "legacy"),
                }
                await redis.publish("cartsnitch.sync.progress", json.dumps(legacy))
            finally:
                await redis.aclose()
        lines = await client.finish()
    finally:
        await client.close()
    events = client.events()
    assert [name for name, _ in events] == ["cartsnitch.sync.progress"] * len(paths), lines
    assert [envelope["payload"]["job_id"] for _, envelope in events] == paths
    assert [envelope["id"] for _, envelope in events][: len(ids)] == ids
    assert all(set(envelope) == {"id", "event_type", "timestamp", "service", "payload"} for _, envelope in events)


@pytest.mark.parametrize("case", ["missing", "expired", "foreign", "garbage"])
async def test_js_client_refusals_carry_problems(server: TestServer, case: str) -> None:
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        other = await factories.create_user(session)
    auth: dict[str, Any] = {}
    if case == "expired":
        auth = {"token": await factories.access_token(server.app, user.id, ttl_seconds=-1)}
    elif case == "foreign":
        auth = {"token": await factories.access_token(server.app, other.id)}
    elif case == "garbage":
        auth = {"token": "x.y.z"}
    url = str(server.make_url("")).rstrip("/")
    client = await JsClient.start(url, f"/users/{user.id}", auth=auth, transports=["websocket"])
    try:
        refusal = await client.until("connect_error")
    finally:
        await client.close()
    assert refusal["data"]["status"] == (403 if case == "foreign" else 401)
    assert refusal["data"]["type"].startswith("https://cartsnitch.com/problems/")
