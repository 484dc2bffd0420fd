"""The socket protocol with python-socketio's client: auth, delivery, resume, public rooms, live auth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub import keys
from hub.app import create_app
from hub.settings import Settings
from tests import factories


class Client:
    """A python-socketio client that records what it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.errors: list[Any] = []
        self.got = asyncio.Event()

    async def connect(self, server: TestServer, namespace: str, auth: dict[str, Any] | None = None) -> None:
        def record(event: str, *args: Any) -> None:
            self.events.append((event, args[0] if args else None))
            self.got.set()

        self.sio.on("*", record, namespace=namespace)
        self.sio.on("connect_error", self.errors.append, namespace=namespace)
        await self.sio.connect(
            str(server.make_url("/")), namespaces=[namespace], auth=auth, transports=["websocket"], wait_timeout=5
        )

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, Any]]:
        async def until() -> None:
            while len(self.events) < count:
                self.got.clear()
                await self.got.wait()

        await asyncio.wait_for(until(), timeout)
        return self.events


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[], Client]]:
    made: list[Client] = []

    def make() -> Client:
        client = Client()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.sio.disconnect()


async def _publish(server: TestServer, user_id: str, n: int = 1, status: str = "running") -> list[str]:
    ids = []
    for i in range(n):
        event_id = await server.app[keys.ingest].publish(
            "cartsnitch.sync.progress",
            {
                "user_id": user_id,
                "store_slug": "kroger",
                "job_id": f"j{i}",
                "status": status,
                "progress": 0.5,
                "items_synced": i,
                "message": "m",
            },
            service="test",
            source="test",
        )
        ids.append(event_id)
    return ids


async def test_connect_and_receive_an_event(server: TestServer, user: Any, clients: Callable[[], Client]) -> None:
    token = await factories.access_token(server.app, user.id)
    client = clients()
    await client.connect(server, f"/users/{user.id}", {"token": token})
    [event_id] = await _publish(server, user.id)
    events = await client.wait_for(1)
    name, envelope = events[0]
    assert name == "cartsnitch.sync.progress"
    assert envelope["id"] == event_id
    assert envelope["event_type"] == "cartsnitch.sync.progress"
    assert envelope["service"] == "test"
    assert envelope["payload"]["user_id"] == user.id


async def _connect_error(server: TestServer, namespace: str, auth: dict[str, Any] | None) -> Any:
    client = Client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server, namespace, auth)
    await client.sio.disconnect()
    assert client.errors, "no connect_error"
    return client.errors[0]


async def _refusal(server: TestServer, namespace: str, auth: dict[str, Any] | None) -> Any:
    return (await _connect_error(server, namespace, auth))["data"]


async def test_refusals_carry_problems(server: TestServer, user: Any) -> None:
    async with server.app[keys.sessionmaker].begin() as session:
        other = await factories.create_user(session)
    mine = await factories.access_token(server.app, user.id)
    expired = await factories.access_token(server.app, user.id, ttl_seconds=-5)
    for auth in (None, {}, {"token": "nonsense"}, {"token": expired}):
        problem = await _refusal(server, f"/users/{user.id}", auth)
        assert problem["status"] == 401, auth
        assert problem["type"].endswith("/unauthorized")
    problem = await _refusal(server, f"/users/{other.id}", {"token": mine})
    assert problem["status"] == 403
    for namespace in ("/nowhere", "/users/bad id", "/"):
        assert await _connect_error(server, namespace, {"token": mine}) == {"message": "Invalid namespace"}


async def test_resume_replays_in_order_exactly_once_then_live(
    server: TestServer, user: Any, clients: Callable[[], Client]
) -> None:
    token = await factories.access_token(server.app, user.id)
    ids = await _publish(server, user.id, 5)
    client = clients()
    await client.connect(server, f"/users/{user.id}", {"token": token, "last_event_id": ids[1]})
    live = await _publish(server, user.id, 2)
    await client.wait_for(5)
    await asyncio.sleep(0.2)
    assert [envelope["id"] for _name, envelope in client.events] == ids[2:] + live


async def test_stale_last_event_id_gets_resync(server: TestServer, user: Any, clients: Callable[[], Client]) -> None:
    token = await factories.access_token(server.app, user.id)
    client = clients()
    await client.connect(server, f"/users/{user.id}", {"token": token, "last_event_id": "123-0-zzzzzzzz"})
    events = await client.wait_for(1)
    assert events[0][0] == "cartsnitch.resync"
    assert events[0][1]["payload"]["reason"] == "history_lost"


async def test_every_connection_of_a_user_gets_each_event_once(
    server: TestServer, user: Any, clients: Callable[[], Client]
) -> None:
    token = await factories.access_token(server.app, user.id)
    first, second = clients(), clients()
    await first.connect(server, f"/users/{user.id}", {"token": token})
    await second.connect(server, f"/users/{user.id}", {"token": token})
    ids = await _publish(server, user.id, 3)
    for client in (first, second):
        await client.wait_for(3)
    await asyncio.sleep(0.2)
    for client in (first, second):
        assert [envelope["id"] for _n, envelope in client.events] == ids


async def test_public_room_unknown_is_refused(server: TestServer, clients: Callable[[], Client]) -> None:
    client = clients()
    await client.connect(server, "/public")
    ack = await client.sio.call("subscribe", {"room": "nope"}, namespace="/public", timeout=5)
    assert ack["ok"] is False
    assert ack["problem"]["status"] == 404


async def test_logout_ends_live_connections(server: TestServer, user: Any, clients: Callable[[], Client]) -> None:
    token = await factories.access_token(server.app, user.id)
    client = clients()
    await client.connect(server, f"/users/{user.id}", {"token": token})
    disconnected = asyncio.Event()
    client.sio.on("disconnect", lambda *a: disconnected.set(), namespace=f"/users/{user.id}")
    async with __import__("aiohttp").ClientSession() as http:
        response = await http.post(server.make_url("/auth/logout"), headers={"Authorization": f"Bearer {token}"})
        assert response.status == 204
    await asyncio.wait_for(disconnected.wait(), 5)
    names = [name for name, _ in client.events]
    assert "cartsnitch.session.ended" in names


async def test_app_is_a_web_application(server: TestServer) -> None:
    assert isinstance(server.app, web.Application)


async def test_trimmed_history_gets_resync(
    aiohttp_server: Callable[..., Awaitable[TestServer]], settings: Settings, clients: Callable[[], Client]
) -> None:
    server = await aiohttp_server(create_app(settings.with_overrides(history_max_events=5)))
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    token = await factories.access_token(server.app, user.id)
    ids = await _publish(server, user.id, 300)  # Redis trims whole stream nodes (100 entries) at a time
    client = clients()
    await client.connect(server, f"/users/{user.id}", {"token": token, "last_event_id": ids[0]})
    events = await client.wait_for(1)
    assert events[0] == ("cartsnitch.resync", events[0][1])
    assert events[0][1]["payload"]["reason"] == "history_trimmed"
    recent = clients()
    await recent.connect(server, f"/users/{user.id}", {"token": token, "last_event_id": ids[-2]})
    [(name, envelope)] = await recent.wait_for(1)
    assert (name, envelope["id"]) == ("cartsnitch.sync.progress", ids[-1])


async def test_expiring_token_is_announced_refreshed_and_enforced(
    aiohttp_server: Callable[..., Awaitable[TestServer]], settings: Settings, clients: Callable[[], Client]
) -> None:
    server = await aiohttp_server(create_app(settings.with_overrides(auth_expiring_notice_seconds=2)))
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    namespace = f"/users/{user.id}"
    client = clients()
    await client.connect(server, namespace, {"token": await factories.access_token(server.app, user.id, ttl_seconds=3)})
    [(name, envelope)] = await client.wait_for(1, timeout=4)
    assert name == "cartsnitch.auth.expiring"
    assert 0 <= envelope["payload"]["seconds_left"] <= 2
    fresh = await factories.access_token(server.app, user.id, ttl_seconds=3600)
    ack = await client.sio.call("auth.refresh", {"token": fresh}, namespace=namespace, timeout=5)
    assert ack["ok"] is True
    bad = await client.sio.call("auth.refresh", {"token": "nope"}, namespace=namespace, timeout=5)
    assert bad["ok"] is False and bad["problem"]["status"] == 401
    await asyncio.sleep(2.5)
    assert client.sio.connected  # the refreshed token keeps it alive past the first token's expiry

    lapsing = clients()
    gone = asyncio.Event()
    lapsing.sio.on("disconnect", lambda *a: gone.set(), namespace=namespace)
    await lapsing.connect(
        server, namespace, {"token": await factories.access_token(server.app, user.id, ttl_seconds=2)}
    )
    await asyncio.wait_for(gone.wait(), 6)
    assert [name for name, _ in lapsing.events][-1] == "cartsnitch.session.ended"


async def test_deleting_the_account_ends_live_connections(
    server: TestServer, user: Any, clients: Callable[[], Client]
) -> None:
    token = await factories.access_token(server.app, user.id)
    client = clients()
    await client.connect(server, f"/users/{user.id}", {"token": token})
    disconnected = asyncio.Event()
    client.sio.on("disconnect", lambda *a: disconnected.set(), namespace=f"/users/{user.id}")
    async with aiohttp.ClientSession() as http:
        response = await http.delete(server.make_url("/auth/me"), headers={"Authorization": f"Bearer {token}"})
        assert response.status == 204
    await asyncio.wait_for(disconnected.wait(), 5)
    ended = [payload for name, payload in client.events if name == "cartsnitch.session.ended"]
    assert ended and ended[0]["payload"]["reason"] == "account_deleted"
    again = clients()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await again.connect(server, f"/users/{user.id}", {"token": token})
