"""Slow and abusive clients: a reader that stops is dropped without delaying the others; inbound limits."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestServer

from hub import keys
from hub.app import create_app
from hub.settings import Settings
from tests import factories
from tests.rawws import RawSocketIO


@pytest.fixture
async def server(aiohttp_server: Callable[..., Awaitable[TestServer]], settings: Settings) -> TestServer:
    tight = settings.with_overrides(
        socket_send_queue_bytes=256 * 1024, socket_inbound_events_per_second=5.0, socket_inbound_burst=5
    )
    return await aiohttp_server(create_app(tight))


async def test_a_client_that_stops_reading_is_dropped_and_others_are_not_delayed(server: TestServer) -> None:
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    token = await factories.access_token(server.app, user.id)
    namespace = f"/users/{user.id}"
    stalled = await RawSocketIO.connect(str(server.make_url("/")), namespace, token)

    latencies: list[float] = []
    received = asyncio.Event()
    fast = socketio.AsyncClient(reconnection=False)
    total = 2250

    def on_event(envelope: dict[str, Any]) -> None:
        latencies.append(time.time() - envelope["payload"]["sent_at"])
        if len(latencies) == total:
            received.set()

    fast.on("cartsnitch.sync.progress", on_event, namespace=namespace)
    await fast.connect(
        str(server.make_url("/")), namespaces=[namespace], auth={"token": token}, transports=["websocket"]
    )
    ingest = server.app[keys.ingest]
    filler = "x" * 2000  # the longest message: 4.5 MB in all, past the send queue and what the kernel buffers
    try:
        for n in range(total):
            await ingest.publish(
                "cartsnitch.sync.progress",
                {
                    "user_id": user.id,
                    "store_slug": "kroger",
                    "job_id": str(n),
                    "status": "running",
                    "progress": 0.5,
                    "items_synced": n,
                    "message": filler,
                    "sent_at": time.time(),
                },
                service="test",
                source="test",
            )
            if n % 100 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(received.wait(), 30)
    finally:
        await fast.disconnect()
        stalled.close()
    metrics = server.app[keys.metrics]
    assert metrics.registry.get_sample_value("hub_slow_consumer_disconnects_total") == 1  # the stalled reader
    assert len(latencies) == total
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(
        f"\nfast client while another stalled: {total} events, p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms"
    )
    assert p99 < 1.0


async def test_inbound_events_are_rate_limited(server: TestServer) -> None:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(str(server.make_url("/")), namespaces=["/public"], transports=["websocket"])
    try:
        acks = [
            await client.call("unsubscribe", {"room": "inflation"}, namespace="/public", timeout=5) for _ in range(8)
        ]
    finally:
        await client.disconnect()
    assert [ack["ok"] for ack in acks[:5]] == [True] * 5
    limited = [ack for ack in acks if not ack["ok"]]
    assert limited
    assert limited[0]["problem"]["status"] == 429


async def test_oversized_messages_end_the_connection(server: TestServer) -> None:
    client = socketio.AsyncClient(reconnection=False)
    gone = asyncio.Event()
    client.on("disconnect", lambda *a: gone.set(), namespace="/public")
    await client.connect(str(server.make_url("/")), namespaces=["/public"], transports=["websocket"])
    await client.emit(
        "subscribe", {"room": "x" * (server.app[keys.settings].socket_max_payload_bytes + 10)}, namespace="/public"
    )
    await asyncio.wait_for(gone.wait(), 5)
    await client.disconnect()
