"""The REST fallback: long-poll and SSE give the same ids and envelopes as the socket, and resume correctly."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from hub import keys
from hub.app import create_app
from tests import factories


async def _publish(server: TestServer, user_id: str, n: int, start: int = 0) -> list[str]:
    return [
        await server.app[keys.ingest].publish(
            "cartsnitch.sync.progress",
            {
                "user_id": user_id,
                "store_slug": "kroger",
                "job_id": str(i),
                "status": "running",
                "progress": 0.1,
                "items_synced": i,
                "message": "",
            },
            service="test",
            source="test",
        )
        for i in range(start, start + n)
    ]


async def _sse_events(http: ClientSession, url: str, headers: dict[str, str], count: int) -> list[dict[str, str]]:
    """Parse ``count`` SSE events (id/event/data) from a stream."""
    events: list[dict[str, str]] = []
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        while len(events) < count:
            line = (await asyncio.wait_for(response.content.readline(), 10)).decode().rstrip("\n")
            if line == "":
                if "data" in current:
                    events.append(current)
                current = {}
            elif not line.startswith(":") and ":" in line:
                name, _, value = line.partition(": ")
                current[name] = value
    return events


async def test_long_poll_socket_and_sse_agree(server: TestServer, user: Any) -> None:
    token = await factories.access_token(server.app, user.id)
    headers = {"Authorization": f"Bearer {token}"}
    namespace = f"/users/{user.id}"
    seen: list[dict[str, Any]] = []
    client = socketio.AsyncClient(reconnection=False)
    client.on("cartsnitch.sync.progress", seen.append, namespace=namespace)
    await client.connect(
        str(server.make_url("/")), namespaces=[namespace], auth={"token": token}, transports=["websocket"]
    )
    ids = await _publish(server, user.id, 4)
    async with ClientSession() as http:
        response = await http.get(server.make_url("/api/v1/me/events"), headers=headers)
        assert response.status == 200
        page = await response.json()
        sse = await _sse_events(
            http, str(server.make_url("/api/v1/me/events/stream")), {**headers, "Last-Event-ID": ids[0]}, 3
        )
    for _ in range(50):
        if len(seen) == 4:
            break
        await asyncio.sleep(0.05)
    await client.disconnect()
    assert [e["id"] for e in page["events"]] == ids
    assert page["next"] == ids[-1]
    assert page["events"] == seen
    assert [e["id"] for e in sse] == ids[1:]
    assert all(e["event"] == "cartsnitch.sync.progress" for e in sse)
    import json

    assert [json.loads(e["data"]) for e in sse] == seen[1:]


async def test_long_poll_resumes_after_an_id_and_waits_for_the_next_event(server: TestServer, user: Any) -> None:
    token = await factories.access_token(server.app, user.id)
    headers = {"Authorization": f"Bearer {token}"}
    ids = await _publish(server, user.id, 3)
    async with ClientSession() as http:
        response = await http.get(
            server.make_url("/api/v1/me/events"), params={"after": ids[0], "limit": "1"}, headers=headers
        )
        page = await response.json()
        assert [e["id"] for e in page["events"]] == [ids[1]]
        assert page["next"] == ids[1]

        async def later() -> list[str]:
            await asyncio.sleep(0.3)
            return await _publish(server, user.id, 1, start=10)

        publishing = asyncio.ensure_future(later())
        started = asyncio.get_running_loop().time()
        response = await http.get(
            server.make_url("/api/v1/me/events"), params={"after": ids[-1], "wait": "5"}, headers=headers
        )
        waited = asyncio.get_running_loop().time() - started
        page = await response.json()
        [new_id] = await publishing
        assert [e["id"] for e in page["events"]] == [new_id]
        assert 0.2 < waited < 4

        empty = await http.get(
            server.make_url("/api/v1/me/events"), params={"after": new_id, "wait": "0.3"}, headers=headers
        )
        body = await empty.json()
        assert body == {"events": [], "next": new_id, "resync": None}


async def test_long_poll_reports_resync_and_validates(server: TestServer, user: Any) -> None:
    headers = await factories.auth_headers(server.app, user.id)
    async with ClientSession() as http:
        stale = await http.get(server.make_url("/api/v1/me/events"), params={"after": "1-0-aaaaaaaa"}, headers=headers)
        assert (await stale.json())["resync"] == "history_lost"
        bad = await http.get(server.make_url("/api/v1/me/events"), params={"after": "nope"}, headers=headers)
        assert bad.status == 422
        assert (await bad.json())["errors"][0]["field"] == "after"
        too_long = await http.get(server.make_url("/api/v1/me/events"), params={"wait": "31"}, headers=headers)
        assert too_long.status == 422
        anonymous = await http.get(server.make_url("/api/v1/me/events"))
        assert anonymous.status == 401
        anonymous_sse = await http.get(server.make_url("/api/v1/me/events/stream"))
        assert anonymous_sse.status == 401


async def test_events_of_another_user_are_invisible(server: TestServer, user: Any) -> None:
    async with server.app[keys.sessionmaker].begin() as session:
        other = await factories.create_user(session)
    await _publish(server, other.id, 2)
    headers = await factories.auth_headers(server.app, user.id)
    async with ClientSession() as http:
        page = await (await http.get(server.make_url("/api/v1/me/events"), headers=headers)).json()
    assert page["events"] == []


async def test_an_event_published_once_the_stream_is_open_arrives(server: TestServer, user: Any) -> None:
    """A browser's EventSource fires ``open`` on the response head: an event published from then on is the
    stream's, however long subscribing takes (a Redis round trip; here a slowed one)."""
    token = await factories.access_token(server.app, user.id)
    bus = server.app[keys.bus]
    subscribe = bus.subscribe

    async def slow_subscribe(audience: str) -> None:
        await asyncio.sleep(0.3)
        await subscribe(audience)

    bus.subscribe = slow_subscribe  # type: ignore[method-assign]
    url = server.make_url("/api/v1/me/events/stream")
    async with ClientSession() as http, http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200
        [event_id] = await _publish(server, user.id, 1)
        body = b""
        while f"id: {event_id}\n".encode() not in body:
            body += await asyncio.wait_for(response.content.readany(), 5)


async def test_public_stream_validates_the_room(server: TestServer) -> None:
    async with ClientSession() as http:
        bad = await http.get(server.make_url("/api/v1/public/stream"), params={"room": "users:1"})
        assert bad.status == 422
        missing = await http.get(server.make_url("/api/v1/public/stream"))
        assert missing.status == 422


async def test_a_stream_ticket_opens_the_stream_once(server: TestServer, user: Any) -> None:
    headers = await factories.auth_headers(server.app, user.id)
    ids = await _publish(server, user.id, 2)
    async with ClientSession() as http:
        response = await http.post(server.make_url("/api/v1/me/events/ticket"), headers=headers)
        assert response.status == 200
        body = await response.json()
        assert set(body) == {"ticket", "expires_in"} and 0 < body["expires_in"] <= 30
        url = str(server.make_url("/api/v1/me/events/stream").with_query(ticket=body["ticket"], last_event_id=ids[0]))
        events = await _sse_events(http, url, {}, 1)
        assert [e["id"] for e in events] == ids[1:]
        spent = await http.get(url)
        assert spent.status == 401
        assert spent.headers["Content-Type"].startswith("application/problem+json")
        forged = await http.get(server.make_url("/api/v1/me/events/stream").with_query(ticket="x" * 43))
        assert forged.status == 401
        anonymous = await http.post(server.make_url("/api/v1/me/events/ticket"))
        assert anonymous.status == 401


async def test_a_stream_ticket_expires(aiohttp_server: Any, settings: Any) -> None:
    from hub.app import create_app

    server = await aiohttp_server(create_app(settings.with_overrides(stream_ticket_seconds=1)))
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    headers = await factories.auth_headers(server.app, user.id)
    async with ClientSession() as http:
        ticket = (await (await http.post(server.make_url("/api/v1/me/events/ticket"), headers=headers)).json())[
            "ticket"
        ]
        await asyncio.sleep(1.3)
        late = await http.get(server.make_url("/api/v1/me/events/stream").with_query(ticket=ticket))
        assert late.status == 401


async def test_open_streams_end_when_the_server_shuts_down(aiohttp_server: Any, settings: Any, user: Any) -> None:
    own = await aiohttp_server(create_app(settings))
    headers = await factories.auth_headers(own.app, user.id)
    async with ClientSession() as http:
        public = await http.get(own.make_url("/api/v1/public/stream"), params={"room": "inflation"})
        mine = await http.get(own.make_url("/api/v1/me/events/stream"), headers=headers)
        poll = asyncio.ensure_future(http.get(own.make_url("/api/v1/me/events"), params={"wait": 30}, headers=headers))
        assert public.status == 200 and mine.status == 200
        await public.content.readline()
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        await own.close()
        assert asyncio.get_running_loop().time() - started < 5
        for stream in (public, mine):
            await asyncio.wait_for(stream.read(), 5)  # the body ends: the client reconnects elsewhere
        assert (await asyncio.wait_for(poll, 5)).status == 200
