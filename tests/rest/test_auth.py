from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub import keys
from hub.store.models import Account, RefreshFamily
from tests import factories
from tests.responses import check_problem

Client = TestClient[Any, Any]


async def _register(client: Client, email: str = "ann@example.com", password: str = "s3cret-password") -> Any:
    response = await client.post("/auth/register", json={"email": email, "password": password, "display_name": "Ann"})
    assert response.status == 201, await response.text()
    return await response.json()


async def test_register_login_me_refresh(client: Client) -> None:
    registered = await _register(client)
    assert registered["token_type"] == "bearer"
    assert registered["expires_in"] == 15 * 60
    assert registered["user"]["email"] == "ann@example.com"

    login = await client.post("/auth/login", json={"email": "ANN@example.com", "password": "s3cret-password"})
    assert login.status == 200
    assert login.headers["Content-Type"].startswith("application/json")
    tokens = await login.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["type"] == "access" and claims["sub"] == registered["user"]["id"]
    assert {"exp", "iat", "sid", "jti"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 15 * 60

    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status == 200
    assert (await me.json())["id"] == registered["user"]["id"]

    refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status == 200
    new_tokens = await refreshed.json()
    assert new_tokens["refresh_token"] != tokens["refresh_token"]
    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {new_tokens['access_token']}"})
    assert me.status == 200


async def test_password_is_stored_as_bcrypt_cost_12_in_accounts(client: Client) -> None:
    registered = await _register(client)
    async with client.app[keys.sessionmaker]() as session:
        account = (
            await session.execute(select(Account).where(Account.user_id == registered["user"]["id"]))
        ).scalar_one()
    assert account.provider_id == "credential"
    assert account.password is not None and account.password.startswith("$2b$12$")


async def test_refresh_reuse_revokes_the_whole_family(client: Client) -> None:
    await _register(client)
    login = await (
        await client.post("/auth/login", json={"email": "ann@example.com", "password": "s3cret-password"})
    ).json()
    first = login["refresh_token"]
    rotated = await (await client.post("/auth/refresh", json={"refresh_token": first})).json()

    reused = await client.post("/auth/refresh", json={"refresh_token": first})
    check_problem(reused, await reused.json(), 401, "unauthorized")

    # the family is revoked: the token rotated from it and its access token stop working too
    after = await client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    check_problem(after, await after.json(), 401, "unauthorized")
    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert me.status == 401
    async with client.app[keys.sessionmaker]() as session:
        family = (await session.execute(select(RefreshFamily))).scalars().all()
    assert [f.revoked_reason for f in family if f.revoked_at] == ["refresh_token_reuse"]


async def test_unknown_email_and_wrong_password_are_indistinguishable(client: Client) -> None:
    await _register(client)
    wrong = await client.post("/auth/login", json={"email": "ann@example.com", "password": "nope-nope"})
    unknown = await client.post("/auth/login", json={"email": "bob@example.com", "password": "nope-nope"})
    wrong_body, unknown_body = await wrong.json(), await unknown.json()
    check_problem(wrong, wrong_body, 401, "unauthorized")
    assert wrong_body == {**unknown_body, "instance": wrong_body["instance"]}


async def test_unknown_email_costs_a_bcrypt_check_too(client: Client) -> None:
    await _register(client)

    async def timed(email: str) -> float:
        started = time.perf_counter()
        await client.post("/auth/login", json={"email": email, "password": "nope-nope"})
        return time.perf_counter() - started

    await timed("warmup@example.com")
    known = min([await timed("ann@example.com") for _ in range(2)])
    unknown = min([await timed("zed@example.com") for _ in range(2)])
    # both pay for one cost-12 bcrypt (~0.2 s); an early return for unknown emails would be ~100x faster
    assert unknown > known * 0.5


async def test_better_auth_session_cookie_and_bearer_authenticate(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        token = await factories.create_session_token(session, user=user)
        expired = await factories.create_session_token(session, user=user, expires_in=timedelta(seconds=-5))
    for cookie in ("better-auth.session_token", "__Secure-better-auth.session_token"):
        client.session.cookie_jar.clear()
        response = await client.get("/auth/me", cookies={cookie: f"{token}.c2lnbmF0dXJl"})
        assert response.status == 200, cookie
        assert (await response.json())["id"] == user.id
    client.session.cookie_jar.clear()
    bearer = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status == 200
    old = await client.get("/auth/me", headers={"Authorization": f"Bearer {expired}"})
    check_problem(old, await old.json(), 401, "unauthorized")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("kind", ["alg-none", "expired", "refresh-type", "tampered", "wrong-key", "garbage", "hs512"])
async def test_bad_tokens_are_refused(client: Client, kind: str) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    good = await factories.access_token(client.app, user.id)
    claims = jwt.decode(good, options={"verify_signature": False})
    secret = client.app[keys.settings].jwt_secret_key
    if kind == "alg-none":
        token = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."
    elif kind == "expired":
        token = await factories.access_token(client.app, user.id, ttl_seconds=-10)
    elif kind == "refresh-type":
        token = jwt.encode({**claims, "type": "refresh"}, secret, algorithm="HS256")
    elif kind == "tampered":
        head, _, sig = good.split(".")
        token = f"{head}.{_b64({**claims, 'sub': 'someone-else'})}.{sig}"
    elif kind == "wrong-key":
        token = jwt.encode(claims, "another-secret-another-secret-another", algorithm="HS256")
    elif kind == "hs512":
        token = jwt.encode(claims, secret, algorithm="HS512")
    else:
        token = "a.b.c"
    response = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    check_problem(response, await response.json(), 401, "unauthorized")


async def test_me_requires_credentials(client: Client) -> None:
    response = await client.get("/auth/me")
    check_problem(response, await response.json(), 401, "unauthorized")
    basic = await client.get("/auth/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    check_problem(basic, await basic.json(), 401, "unauthorized")


async def test_logout_revokes_the_session(client: Client) -> None:
    await _register(client)
    tokens = await (
        await client.post("/auth/login", json={"email": "ann@example.com", "password": "s3cret-password"})
    ).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.post("/auth/logout", headers=headers)).status == 204
    assert (await client.get("/auth/me", headers=headers)).status == 401
    refresh = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status == 401


async def test_password_change_signs_out_every_session(client: Client) -> None:
    await _register(client)
    first = await (
        await client.post("/auth/login", json={"email": "ann@example.com", "password": "s3cret-password"})
    ).json()
    second = await (
        await client.post("/auth/login", json={"email": "ann@example.com", "password": "s3cret-password"})
    ).json()
    wrong = await client.post(
        "/auth/password",
        headers={"Authorization": f"Bearer {first['access_token']}"},
        json={"current_password": "not-it-at-all", "new_password": "brand-new-pass"},
    )
    assert wrong.status == 403
    changed = await client.post(
        "/auth/password",
        headers={"Authorization": f"Bearer {first['access_token']}"},
        json={"current_password": "s3cret-password", "new_password": "brand-new-pass"},
    )
    assert changed.status == 200
    fresh = await changed.json()
    for old in (first, second):
        assert (await client.get("/auth/me", headers={"Authorization": f"Bearer {old['access_token']}"})).status == 401
    assert (await client.get("/auth/me", headers={"Authorization": f"Bearer {fresh['access_token']}"})).status == 200
    old_login = await client.post("/auth/login", json={"email": "ann@example.com", "password": "s3cret-password"})
    assert old_login.status == 401
    new_login = await client.post("/auth/login", json={"email": "ann@example.com", "password": "brand-new-pass"})
    assert new_login.status == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": "long-enough-pw"}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": "é" * 40}, "password"),
        ({"email": "a@example.com"}, "password"),
        ({"email": "a@example.com", "password": "long-enough-pw", "admin": True}, "admin"),
    ],
)
async def test_register_validation(client: Client, body: dict[str, Any], field: str) -> None:
    response = await client.post("/auth/register", json=body)
    data = await response.json()
    check_problem(response, data, 422, "validation")
    assert data["code"] == "VALIDATION_ERROR"
    assert field in {error["field"] for error in data["errors"]}


async def test_register_conflict(client: Client) -> None:
    await _register(client)
    again = await client.post("/auth/register", json={"email": "ann@example.com", "password": "whatever-pw"})
    check_problem(again, await again.json(), 409, "conflict")


async def test_malformed_json_is_a_400_problem(client: Client) -> None:
    response = await client.post("/auth/login", data=b'{"email": ', headers={"Content-Type": "application/json"})
    check_problem(response, await response.json(), 400, "malformed-json")
    not_object = await client.post("/auth/login", json=["a"])
    check_problem(not_object, await not_object.json(), 422, "validation")


async def test_login_is_rate_limited_per_client(aiohttp_client: Any, settings: Any) -> None:
    from hub.app import create_app

    # the test client connects from 127.0.0.1: a trusted proxy here, so X-Forwarded-For names the client
    limited = await aiohttp_client(
        create_app(settings.with_overrides(rate_limit_enabled=True, trusted_proxies=("127.0.0.1/32", "10.0.0.0/8")))
    )
    statuses = []
    for _ in range(6):
        response = await limited.post(
            "/auth/login",
            json={"email": "x@example.com", "password": "whatever"},
            headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"},
        )
        statuses.append(response.status)
    assert statuses == [401] * 5 + [429]
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-RateLimit-Limit"] == "5"
    body = await response.json()
    check_problem(response, body, 429, "rate-limited")
    other = await limited.post(
        "/auth/login",
        json={"email": "x@example.com", "password": "whatever"},
        headers={"X-Forwarded-For": "198.51.100.7"},
    )
    assert other.status == 401
    # a client cannot borrow another's budget by writing its address left of the proxy's
    spoofed = await limited.post(
        "/auth/login",
        json={"email": "x@example.com", "password": "whatever"},
        headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 10.0.0.1"},
    )
    assert spoofed.status == 429


async def test_forwarded_for_from_an_untrusted_peer_changes_nothing(aiohttp_client: Any, settings: Any) -> None:
    from hub.app import create_app

    limited = await aiohttp_client(create_app(settings.with_overrides(rate_limit_enabled=True)))
    statuses = []
    for n in range(25):
        response = await limited.post(
            "/auth/login",
            json={"email": "x@example.com", "password": "whatever"},
            headers={"X-Forwarded-For": f"203.0.113.{n}"},
        )
        statuses.append(response.status)
    assert statuses.count(401) == 5 and statuses.count(429) == 20
