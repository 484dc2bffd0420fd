from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from hub import keys
from hub.store.models import UserStoreAccount
from tests import factories
from tests.responses import check_problem, expect_json

Client = TestClient[Any, Any]
PAYLOAD = {"store_slug": "kroger", "job_id": "j1", "status": "running", "progress": 0.5}


async def test_publish_requires_the_service_key(client: Client) -> None:
    body = {"event_type": "cartsnitch.sync.progress", "payload": {**PAYLOAD, "user_id": "u1"}}
    missing = await client.post("/internal/events", json=body)
    assert missing.status == 401
    wrong = await client.post("/internal/events", json=body, headers={"X-Service-Key": "not-the-key"})
    assert wrong.status == 403
    assert wrong.headers["Content-Type"].startswith("application/problem+json")
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    user_token = await factories.access_token(client.app, user.id)
    as_user = await client.post("/internal/events", json=body, headers={"Authorization": f"Bearer {user_token}"})
    assert as_user.status == 401


async def test_publish_records_the_event(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    key = {"X-Service-Key": client.app[keys.settings].service_key or ""}
    response = await client.post(
        "/internal/events",
        headers=key,
        json={
            "event_type": "cartsnitch.sync.progress",
            "payload": {**PAYLOAD, "user_id": user.id, "extra": [1, 2]},
            "service": "receiptwitness",
            "timestamp": "2026-11-26T12:00:00+00:00",
        },
    )
    assert response.status == 202
    event_id = (await response.json())["id"]
    page = await (
        await client.get("/api/v1/me/events", headers=await factories.auth_headers(client.app, user.id))
    ).json()
    [envelope] = page["events"]
    assert envelope["id"] == event_id
    assert envelope["service"] == "receiptwitness"
    assert envelope["timestamp"] == "2026-11-26T12:00:00+00:00"
    assert envelope["payload"]["extra"] == [1, 2]


async def test_publish_rejects_a_payload_that_fails_its_schema(client: Client) -> None:
    key = {"X-Service-Key": client.app[keys.settings].service_key or ""}
    response = await client.post(
        "/internal/events",
        headers=key,
        json={
            "event_type": "cartsnitch.sync.progress",
            "payload": {"user_id": "u 1", "store_slug": "kroger", "status": "exploded", "progress": 3},
        },
    )
    assert response.status == 422
    body = await response.json()
    assert body["type"].endswith("/invalid-payload")
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"payload.user_id", "payload.job_id", "payload.status", "payload.progress"}
    unknown = await client.post("/internal/events", headers=key, json={"event_type": "cartsnitch.nope", "payload": {}})
    assert unknown.status == 422
    bad_time = await client.post(
        "/internal/events",
        headers=key,
        json={
            "event_type": "cartsnitch.sync.progress",
            "payload": {**PAYLOAD, "user_id": "u1"},
            "timestamp": "yesterday",
        },
    )
    assert bad_time.status == 422
    assert (await bad_time.json())["errors"][0]["field"] == "timestamp"


async def test_internal_routes_are_disabled_without_a_service_key(aiohttp_client: Any, settings: Any) -> None:
    from hub.app import create_app

    client = await aiohttp_client(create_app(settings.with_overrides(service_key=None)))
    response = await client.post(
        "/internal/events",
        json={"event_type": "cartsnitch.sync.progress", "payload": {}},
        headers={"X-Service-Key": "anything"},
    )
    assert response.status == 503


async def test_error_stats_count_this_processes_errors(client: Client) -> None:
    """The old gateway's /internal/error-stats, read from the request counters /metrics exports."""
    key = {"X-Service-Key": client.app[keys.settings].service_key or ""}
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        store = await factories.create_store(session, slug="kroger", name="Kroger")
        session.add(UserStoreAccount(user_id=user.id, store_id=store.id, status="active"))
    before = await expect_json(await client.get("/internal/error-stats", headers=key))
    assert set(before) == {"error_counts", "recent_5xx_count", "requests_total"}

    for _ in range(2):
        assert (await client.get("/api/v1/nowhere")).status == 404
    assert (await client.get("/api/v1/purchases")).status == 401
    headers = await factories.auth_headers(client.app, user.id)
    sync = await client.post("/api/v1/scraping/kroger/sync", headers=headers)  # no ReceiptWitness, no demo driver
    assert sync.status == 503

    after = await expect_json(await client.get("/internal/error-stats", headers=key))
    counts = before["error_counts"]
    assert after["error_counts"] == {
        **counts,
        "401": counts.get("401", 0) + 1,
        "404": counts.get("404", 0) + 2,
        "503": counts.get("503", 0) + 1,
    }
    assert after["recent_5xx_count"] == before["recent_5xx_count"] + 1
    assert after["requests_total"] == before["requests_total"] + 5  # and the first read of the stats
    metrics = await (await client.get("/metrics")).text()
    sync_line = 'hub_http_requests_total{method="POST",route="/api/v1/scraping/{store_slug}/sync",status="503"} 1.0'
    assert sync_line in metrics

    missing = await client.get("/internal/error-stats")
    check_problem(missing, await missing.json(), 401, "unauthorized")
    wrong = await client.get("/internal/error-stats", headers={"X-Service-Key": "not-the-key"})
    check_problem(wrong, await wrong.json(), 403, "forbidden")
