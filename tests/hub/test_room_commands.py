"""Room commands on ``/public`` against what a client may do between them: send several in one batch, leave the
namespace while a subscribe waits for its snapshot, subscribe while the event bus does not answer. Each event runs
in its own task and a subscribe waits for its snapshot, so each of these once left a subscription the client had
not asked for, or none where it had."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from channels import bus
from hub import keys
from hub.app import create_app
from hub.realtime.hub import Hub
from tests.conftest import make_settings
from tests.eio import RS
from tests.hub.test_protocol import Session, base

ROOM = "inflation"
AUDIENCE = bus.room_audience(ROOM)
SUBSCRIBE = json.dumps(["subscribe", {"room": ROOM}])
UNSUBSCRIBE = json.dumps(["unsubscribe", {"room": ROOM}])


@pytest.fixture
async def server(aiohttp_server: Callable[..., Awaitable[TestServer]], sqlite_url: str) -> TestServer:
    return await aiohttp_server(create_app(make_settings(sqlite_url)))


def _hub(server: TestServer) -> Hub:
    return server.app[keys.hub]


async def _acks(session: Session, n: int) -> list[tuple[int, Any]]:
    """The next ``n`` acks on /public, in the order they arrived: (ack id, first argument)."""
    acks = []
    while len(acks) < n:
        packet = await session.next()
        if packet.startswith("43/public,"):
            ack_id, _, rest = packet[len("43/public,") :].partition("[")
            acks.append((int(ack_id), json.loads("[" + rest)[0]))
    return acks


async def test_a_subscribe_and_an_unsubscribe_in_one_batch_apply_in_the_order_sent(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    session = await Session.open("polling", http, base(server))
    await session.join_public()
    await session.send(f"42/public,1{SUBSCRIBE}{RS}42/public,2{UNSUBSCRIBE}")
    acks = await _acks(session, 2)
    assert [ack_id for ack_id, _ in acks] == [1, 2]
    assert all(ack["ok"] for _, ack in acks), acks
    await asyncio.sleep(0.1)
    assert AUDIENCE not in _hub(server).audiences()
    # and the other way round: the last command wins
    await session.send(f"42/public,3{UNSUBSCRIBE}{RS}42/public,4{SUBSCRIBE}")
    assert [ack_id for ack_id, _ in await _acks(session, 2)] == [3, 4]
    assert AUDIENCE in _hub(server).audiences()


async def test_leaving_the_namespace_while_a_subscribe_waits_for_its_snapshot_leaves_no_subscription(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    hub = _hub(server)
    read = hub.snapshot
    assert read is not None
    started = asyncio.Event()

    async def slow(room: str) -> Any:
        started.set()
        await asyncio.sleep(0.3)
        return await read(room)

    hub.snapshot = slow
    session = await Session.open("websocket", http, base(server))
    await session.join_public()
    await session.send(f"42/public,1{SUBSCRIBE}")
    await started.wait()
    await session.send("41/public,")
    await asyncio.sleep(0.6)
    assert AUDIENCE not in hub.audiences()
    assert not any(conn.subscribers for conn in hub.connections.values())


async def test_a_subscribe_the_event_bus_could_not_take_is_a_503_and_the_retry_subscribes(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    hub = _hub(server)
    subscribe = hub.bus.subscribe

    async def down(audience: str) -> None:
        raise ConnectionError("the bus is down")

    session = await Session.open("websocket", http, base(server))
    await session.join_public()
    hub.bus.subscribe = down  # type: ignore[method-assign]
    try:
        refused = await session.call(1, SUBSCRIBE)
    finally:
        hub.bus.subscribe = subscribe  # type: ignore[method-assign]
    assert refused["ok"] is False and refused["problem"]["status"] == 503, refused
    assert AUDIENCE not in hub.audiences()
    accepted = await session.call(2, SUBSCRIBE)
    assert accepted["ok"] is True, accepted
    assert AUDIENCE in hub.audiences()
    assert [list(conn.subscribers) for conn in hub.connections.values()] == [[AUDIENCE]]
