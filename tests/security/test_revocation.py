"""Revocation reaches every live channel: sockets, SSE streams and long-polls end when their credentials end
(logout, password change, refresh-token reuse, a Better-Auth session deleted elsewhere, expiry), on every process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import TestServer
from sqlalchemy import delete, select

from hub import keys
from hub.app import create_app
from hub.realtime.identity import Principal
from hub.settings import Settings
from hub.store.models import Session as BetterAuthSession
from tests import factories
from tests.sse import SseStream, stream_ticket

STREAM = "/api/v1/me/events/stream"


async def _login(http: aiohttp.ClientSession, server: TestServer, email: str) -> dict[str, Any]:
    response = await http.post(server.make_url("/auth/login"), json={"email": email, "password": factories.PASSWORD})
    assert response.status == 200, await response.text()
    pair: dict[str, Any] = await response.json()
    return pair


async def _socket(server: TestServer, user_id: str, auth: dict[str, Any] | None, **kwargs: Any) -> tuple[Any, Any]:
    """A connected python-socketio client and an event set when it is disconnected."""
    client = socketio.AsyncClient(reconnection=False)
    gone = asyncio.Event()
    seen: list[str] = []
    namespace = f"/users/{user_id}"
    client.on("disconnect", lambda *a: gone.set(), namespace=namespace)
    client.on("*", lambda name, *a: seen.append(name), namespace=namespace)
    await client.connect(
        str(server.make_url("/")), namespaces=[namespace], auth=auth, transports=["websocket"], **kwargs
    )
    client.seen = seen  # type: ignore[attr-defined]
    return client, gone


async def test_logout_ends_that_sessions_stream_socket_and_long_poll_but_not_another(
    server: TestServer, user: Any
) -> None:
    async with aiohttp.ClientSession() as http:
        ours = await _login(http, server, user.email)
        other = await _login(http, server, user.email)
        headers = {"Authorization": f"Bearer {ours['access_token']}"}
        stream = await SseStream.open(http, str(server.make_url(STREAM)), headers)
        other_stream = await SseStream.open(
            http, str(server.make_url(STREAM)), {"Authorization": f"Bearer {other['access_token']}"}
        )
        sock, gone = await _socket(server, user.id, {"token": ours["access_token"]})
        long_poll = asyncio.ensure_future(
            http.get(server.make_url("/api/v1/me/events"), params={"wait": "20"}, headers=headers)
        )
        await asyncio.sleep(0.2)
        started = time.monotonic()
        assert (await http.post(server.make_url("/auth/logout"), headers=headers)).status == 204
        events = await stream.until_end(timeout=5)
        ended_after = time.monotonic() - started
        assert [e["event"] for e in events][-1] == "cartsnitch.session.ended"
        assert events[-1]["data"]["payload"]["reason"] == "logout"
        await asyncio.wait_for(gone.wait(), 5)
        assert "cartsnitch.session.ended" in sock.seen
        polled = await asyncio.wait_for(long_poll, 5)
        assert polled.status == 401
        assert ended_after < 1.0, ended_after
        # the other session of the same user is untouched
        with pytest.raises(TimeoutError):
            await other_stream.next(timeout=0.5)
        assert not other_stream.ended
        other_stream.close()
        again = await http.get(server.make_url(STREAM), headers=headers)
        assert again.status == 401
    await sock.disconnect()


async def test_password_change_ends_every_channel_of_the_user(server: TestServer, user: Any) -> None:
    async with aiohttp.ClientSession() as http:
        first = await _login(http, server, user.email)
        second = await _login(http, server, user.email)
        url = str(server.make_url(STREAM))
        streams = [
            await SseStream.open(http, url, {"Authorization": f"Bearer {pair['access_token']}"})
            for pair in (first, second)
        ]
        response = await http.post(
            server.make_url("/auth/password"),
            headers={"Authorization": f"Bearer {first['access_token']}"},
            json={"current_password": factories.PASSWORD, "new_password": "another horse battery"},
        )
        assert response.status == 200
        for stream in streams:
            events = await stream.until_end(timeout=5)
            assert events[-1]["data"]["payload"]["reason"] == "password_change"


async def test_refresh_token_reuse_ends_the_familys_socket_at_once(server: TestServer, user: Any) -> None:
    async with aiohttp.ClientSession() as http:
        pair = await _login(http, server, user.email)
        sock, gone = await _socket(server, user.id, {"token": pair["access_token"]})
        fresh = await http.post(server.make_url("/auth/refresh"), json={"refresh_token": pair["refresh_token"]})
        assert fresh.status == 200
        started = time.monotonic()
        replay = await http.post(server.make_url("/auth/refresh"), json={"refresh_token": pair["refresh_token"]})
        assert replay.status == 401
        await asyncio.wait_for(gone.wait(), 5)
        assert time.monotonic() - started < 1.0
        assert "cartsnitch.session.ended" in sock.seen
    await sock.disconnect()


async def test_an_expired_token_ends_its_stream(server: TestServer, user: Any) -> None:
    token = await factories.access_token(server.app, user.id, ttl_seconds=2)
    async with aiohttp.ClientSession() as http:
        stream = await SseStream.open(http, str(server.make_url(STREAM)), {"Authorization": f"Bearer {token}"})
        started = time.monotonic()
        events = await stream.until_end(timeout=6)
        assert events[-1]["event"] == "cartsnitch.session.ended"
        assert events[-1]["data"]["payload"]["reason"] == "token_expired"
        assert time.monotonic() - started < 3.5


async def test_a_ticket_stream_ends_with_the_credential_that_obtained_it(server: TestServer, user: Any) -> None:
    async with aiohttp.ClientSession() as http:
        pair = await _login(http, server, user.email)
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        ticket = await stream_ticket(http, server, headers)
        stream = await SseStream.open(http, str(server.make_url(STREAM).with_query(ticket=ticket)))
        assert (await http.post(server.make_url("/auth/logout"), headers=headers)).status == 204
        events = await stream.until_end(timeout=5)
        assert events[-1]["data"]["payload"]["reason"] == "logout"


async def test_a_ticket_obtained_before_a_logout_opens_nothing_after_it(server: TestServer, user: Any) -> None:
    async with aiohttp.ClientSession() as http:
        pair = await _login(http, server, user.email)
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        ticket = await stream_ticket(http, server, headers)
        assert (await http.post(server.make_url("/auth/logout"), headers=headers)).status == 204
        late = await http.get(server.make_url(STREAM).with_query(ticket=ticket))
        assert late.status == 401
        assert "ended" in (await late.json())["detail"]


async def test_a_better_auth_session_deleted_elsewhere_ends_its_channels(
    aiohttp_server: Callable[..., Awaitable[TestServer]], settings: Settings
) -> None:
    server = await aiohttp_server(create_app(settings.with_overrides(session_revalidate_seconds=1)))
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        token = await factories.create_session_token(session, user=user)
    sock, gone = await _socket(server, user.id, None, headers={"Cookie": f"better-auth.session_token={token}.c2ln"})
    async with aiohttp.ClientSession() as http:
        stream = await SseStream.open(
            http, str(server.make_url(STREAM)), {"Cookie": f"better-auth.session_token={token}.c2ln"}
        )
        async with server.app[keys.sessionmaker].begin() as session:  # Better-Auth's sign-out, not the hub's
            await session.execute(delete(BetterAuthSession).where(BetterAuthSession.token == token))
        started = time.monotonic()
        events = await stream.until_end(timeout=5)
        assert events[-1]["data"]["payload"]["reason"] == "revoked"
        await asyncio.wait_for(gone.wait(), 5)
        assert time.monotonic() - started < 2.5
    await sock.disconnect()


async def test_a_credential_found_expired_by_the_revalidation_ends_as_expired_not_revoked(
    server: TestServer,
) -> None:
    """The revalidation can run in the second between a credential's expiry and the expiry check: what it finds
    dead then is an expiry (the client refreshes), not a revocation (the client signs its user out)."""
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        token = await factories.create_session_token(session, user=user)
        row = (await session.execute(select(BetterAuthSession).where(BetterAuthSession.token == token))).scalar_one()
    async with aiohttp.ClientSession() as http:
        stream = await SseStream.open(http, str(server.make_url(STREAM)), {"Authorization": f"Bearer {token}"})
        await server.app[keys.hub].revalidate([Principal(user.id, "session", row.id, time.time() - 0.5)])
        events = await stream.until_end(timeout=5)
    assert events[-1]["event"] == "cartsnitch.session.ended"
    assert events[-1]["data"]["payload"]["reason"] == "token_expired"


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("redis_kind", ["redis_url", "redis_cluster_url"], ids=["redis", "redis-cluster"])
async def test_a_logout_on_one_process_reaches_another_within_a_second(
    pg_url: str, redis_kind: str, request: pytest.FixtureRequest
) -> None:
    """Through python-socketio's Redis adapter: on a cluster, classic pub/sub on a node each process picks."""
    from hub.store.engine import build_engine, build_sessionmaker
    from tests.cluster import start_hub, stop_hubs
    from tests.conftest import make_settings

    settings = make_settings(pg_url, request.getfixturevalue(redis_kind))
    engine = build_engine(pg_url)
    async with build_sessionmaker(engine).begin() as session:
        user = await factories.create_user(session)
    await engine.dispose()
    first, second = await asyncio.gather(start_hub(settings), start_hub(settings))
    try:
        async with aiohttp.ClientSession() as http:
            login = await http.post(
                first.url + "/auth/login", json={"email": user.email, "password": factories.PASSWORD}
            )
            headers = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
            assert (await http.get(second.url + "/auth/me", headers=headers)).status == 200  # cached as live there
            stream = await SseStream.open(http, second.url + STREAM, headers)
            started = time.monotonic()
            assert (await http.post(first.url + "/auth/logout", headers=headers)).status == 204
            events = await stream.until_end(timeout=5)
            ended = time.monotonic() - started
            refused = await http.get(second.url + "/auth/me", headers=headers)
            refused_after = time.monotonic() - started
        assert events[-1]["data"]["payload"]["reason"] == "logout"
        assert refused.status == 401
        assert ended < 1.0 and refused_after < 1.0, (ended, refused_after)
    finally:
        await stop_hubs([first, second])
