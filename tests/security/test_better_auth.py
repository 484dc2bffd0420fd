"""Better-Auth session cookies: with CARTSNITCH_BETTER_AUTH_SECRET the signature must be Better-Auth's (HMAC-SHA256
of the token, standard base64, URL-encoded, as better-call's signCookieValue writes it); without it, the cookie is
accepted unverified and the hub says so at start-up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import TestServer

from hub import keys
from hub.app import create_app
from hub.settings import Settings
from tests import factories

SECRET = "better-auth-secret-for-the-test-suite-0123456789"
COOKIE = "better-auth.session_token"


def better_auth_cookie(token: str, secret: str) -> str:
    """What Better-Auth puts in the cookie (written from its documented algorithm, not copied)."""
    signature = base64.b64encode(hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()).decode()
    return quote(f"{token}.{signature}", safe="")


@pytest.fixture
async def signed_server(aiohttp_server: Callable[..., Awaitable[TestServer]], settings: Settings) -> TestServer:
    return await aiohttp_server(create_app(settings.with_overrides(better_auth_secret=SECRET)))


async def _session(server: TestServer) -> tuple[Any, str]:
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        token = await factories.create_session_token(session, user=user)
    return user, token


async def _me(server: TestServer, **headers: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(server.make_url("/auth/me"), headers=headers) as response:
        return response.status


async def test_a_signed_cookie_is_accepted_and_a_forged_or_missing_signature_is_not(signed_server: TestServer) -> None:
    _user, token = await _session(signed_server)
    good = better_auth_cookie(token, SECRET)
    assert "%3D" in good  # URL-encoded as the browser stores it
    assert await _me(signed_server, Cookie=f"{COOKIE}={good}") == 200
    assert await _me(signed_server, Cookie=f"__Secure-{COOKIE}={good}") == 200
    forged = better_auth_cookie(token, "not the secret, but long enough to look real")
    for value in (token, f"{token}.", f"{token}.c2lnbmF0dXJl", forged, good[:-4], good.replace(token[:4], "AAAA")):
        assert await _me(signed_server, Cookie=f"{COOKIE}={value}") == 401, value
    # a raw session token (someone who can read the sessions table) is no credential either
    assert await _me(signed_server, Authorization=f"Bearer {token}") == 401
    assert await _me(signed_server, Authorization=f"Bearer {good}") == 200


async def test_the_socket_checks_the_signature_too(signed_server: TestServer) -> None:
    user, token = await _session(signed_server)
    namespace = f"/users/{user.id}"
    url = str(signed_server.make_url("/"))
    refused = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    refused.on("connect_error", errors.append, namespace=namespace)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(
            url, namespaces=[namespace], headers={"Cookie": f"{COOKIE}={token}.c2ln"}, transports=["websocket"]
        )
    await refused.disconnect()
    assert errors and errors[0]["data"]["status"] == 401
    accepted = socketio.AsyncClient(reconnection=False)
    await accepted.connect(
        url,
        namespaces=[namespace],
        headers={"Cookie": f"{COOKIE}={better_auth_cookie(token, SECRET)}"},
        transports=["websocket"],
        wait_timeout=5,
    )
    assert accepted.connected
    await accepted.disconnect()


async def test_without_the_secret_cookies_are_unverified_and_the_start_says_so(
    client: Any, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    with caplog.at_level(logging.WARNING, logger="hub"):
        create_app(settings)
    assert any("CARTSNITCH_BETTER_AUTH_SECRET is not set" in r.getMessage() for r in caplog.records)
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        token = await factories.create_session_token(session, user=user)
    client.session.cookie_jar.clear()
    response = await client.get("/auth/me", cookies={COOKIE: f"{token}.anything"})
    assert response.status == 200
