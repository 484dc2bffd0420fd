from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict
from sqlalchemy import select, text

from channels import bus as channels_bus
from hub import keys
from hub.store.models import (
    Account,
    AlertSettings,
    PriceHistory,
    PriceTargetAlert,
    Purchase,
    PurchaseItem,
    RefreshFamily,
    Session,
    ShoppingList,
    User,
    UserStoreAccount,
)
from tests import factories
from tests.responses import check_problem

Client = TestClient[Any, Any]


async def _register(client: Client, email: str = "ann@example.com", password: str = "s3cret-password") -> Any:
    response = await client.post("/auth/register", json={"email": email, "password": password, "display_name": "Ann"})
    assert response.status == 201, await response.text()
    return await response.json()


async def test_a_user_without_a_display_name_reads_an_empty_one(client: Client) -> None:
    """The old gateway's `display_name` is a string: a user who gave none reads "", never null."""
    response = await client.post("/auth/register", json={"email": "anon@example.com", "password": "s3cret-password"})
    assert response.status == 201, await response.text()
    registered = await response.json()
    assert registered["user"]["display_name"] == ""
    headers = {"Authorization": f"Bearer {registered['access_token']}"}
    me = await client.get("/auth/me", headers=headers)
    assert (await me.json())["display_name"] == ""
    renamed = await client.patch("/auth/me", headers=headers, json={"display_name": "Anon"})
    assert (await renamed.json())["display_name"] == "Anon"


async def test_one_email_registered_at_once_in_several_cases_is_one_account(client: Client) -> None:
    """Emails are one account whatever their case: registrations that race (on one process or several) cannot both
    find the address free (two accounts, then every login a 500)."""
    spellings = ["race@example.com", "RACE@example.com", "Race@Example.com", "rAcE@example.COM"]
    raced = await asyncio.gather(
        *(
            client.post("/auth/register", json={"email": email, "password": "s3cret-password", "display_name": "R"})
            for email in spellings
        )
    )
    assert sorted(response.status for response in raced) == [201, 409, 409, 409]
    login = await client.post("/auth/login", json={"email": "RACE@example.com", "password": "s3cret-password"})
    assert login.status == 200


async def test_emails_that_differ_in_case_only_from_before_still_sign_in(client: Client) -> None:
    """Written by another service, or before the hub held emails while claiming them: the exact spelling's account,
    else the oldest, never a 500."""
    async with client.app[keys.sessionmaker].begin() as session:
        older = await factories.create_user(session, email="twice@example.com")
        newer = await factories.create_user(session, email="TWICE@example.com")
    for typed, expected in (("TWICE@example.com", newer.id), ("twice@example.com", older.id), ("Twice@x", None)):
        response = await client.post("/auth/login", json={"email": typed, "password": factories.PASSWORD})
        if expected is None:
            assert response.status == 401
            continue
        assert response.status == 200, await response.text()
        token = (await response.json())["access_token"]
        me = await client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert (await me.json())["id"] == expected


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


async def test_a_session_expires_at_its_instant_whatever_text_form_its_expiry_was_written_in(client: Client) -> None:
    """Better-Auth writes its own rows: on SQLite a date is ISO text (``…T…Z``) or carries an offset. Compared as
    text, a session that expired minutes ago would live until the end of its day, and offsets would be ignored."""
    now = datetime.now(UTC).replace(microsecond=0)
    forms = {
        (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z"): 401,
        (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z"): 200,
        # 8 h ahead of UTC: the wall time reads 7 h ahead, the instant is an hour ago
        (now - timedelta(hours=1)).astimezone(timezone(timedelta(hours=8))).isoformat(sep=" "): 401,
        # 5 h behind UTC: the wall time reads 4 h ago, the instant is an hour ahead
        (now + timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5))).isoformat(sep=" "): 200,
    }
    dialect = client.app[keys.engine].dialect.name
    written = "CAST(CAST(:at AS TEXT) AS timestamptz)" if dialect == "postgresql" else ":at"
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        tokens = {at: await factories.create_session_token(session, user=user) for at in forms}
        for at, token in tokens.items():
            await session.execute(
                text(f"UPDATE sessions SET expires_at = {written} WHERE token = :token"), {"at": at, "token": token}
            )
    for at, status in forms.items():
        response = await client.get("/auth/me", headers={"Authorization": f"Bearer {tokens[at]}"})
        assert response.status == status, at


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


async def test_a_login_that_verified_the_old_password_while_it_changed_gets_no_live_session(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bcrypt takes a quarter of a second: a login that checked the old password, then found the change committed
    before it wrote its session, must not sign in with it (the change said every session ends)."""
    from rest import auth as auth_routes

    registered = await _register(client)
    verified, resume = asyncio.Event(), asyncio.Event()
    real_verify = auth_routes.verify_password

    async def slow_verify(password: str, hashed: str | None) -> bool:
        ok = await real_verify(password, hashed)
        if password == "s3cret-password" and not verified.is_set():
            verified.set()
            await resume.wait()  # the login is held here, its password checked against the old hash
        return ok

    monkeypatch.setattr(auth_routes, "verify_password", slow_verify)
    login = asyncio.ensure_future(
        client.post("/auth/login", json={"email": "ann@example.com", "password": "s3cret-password"})
    )
    await asyncio.wait_for(verified.wait(), 10)
    monkeypatch.setattr(auth_routes, "verify_password", real_verify)
    changed = await client.post(
        "/auth/password",
        headers={"Authorization": f"Bearer {registered['access_token']}"},
        json={"current_password": "s3cret-password", "new_password": "brand-new-pass"},
    )
    assert changed.status == 200
    resume.set()
    response = await login
    check_problem(response, await response.json(), 401, "unauthorized")


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
    # nor by a line of its own that a proxy adding another line (HAProxy's option forwardfor) leaves first: the
    # lines are one list (RFC 9110 §5.3), whose rightmost untrusted hop is the client
    for n in range(3):
        split = await limited.post(
            "/auth/login",
            json={"email": "x@example.com", "password": "whatever"},
            headers=CIMultiDict([("X-Forwarded-For", f"192.0.2.{n}"), ("X-Forwarded-For", "203.0.113.9, 10.0.0.1")]),
        )
        assert split.status == 429


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


# --- PATCH and DELETE /auth/me (the old gateway's profile routes) --------------------------------------------


async def test_update_me_sets_only_the_given_fields(client: Client) -> None:
    registered = await _register(client)
    headers = {"Authorization": f"Bearer {registered['access_token']}"}
    response = await client.patch("/auth/me", headers=headers, json={"display_name": "Annie"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    renamed = await response.json()
    assert (renamed["display_name"], renamed["email"], renamed["image"]) == ("Annie", "ann@example.com", None)
    assert renamed["created_at"] == registered["user"]["created_at"]

    async with client.app[keys.sessionmaker].begin() as session:
        user = await session.get(User, registered["user"]["id"])
        assert user is not None
        user.email_verified = True
    response = await client.patch(
        "/auth/me", headers=headers, json={"email": " ann@new.example ", "image": "https://img.example/a.png"}
    )
    moved = await response.json()
    assert (moved["email"], moved["email_verified"], moved["display_name"]) == ("ann@new.example", False, "Annie")
    assert moved["image"] == "https://img.example/a.png"
    assert await (await client.get("/auth/me", headers=headers)).json() == moved
    unchanged = await client.patch("/auth/me", headers=headers, json={"display_name": None})
    assert await unchanged.json() == moved

    login = await client.post("/auth/login", json={"email": "ann@new.example", "password": "s3cret-password"})
    assert login.status == 200
    old = await client.post("/auth/login", json={"email": "ann@example.com", "password": "s3cret-password"})
    check_problem(old, await old.json(), 401, "unauthorized")


async def test_update_me_refuses_a_taken_email_and_bad_input(client: Client) -> None:
    await _register(client, email="bob@example.com")
    ann = await _register(client)
    headers = {"Authorization": f"Bearer {ann['access_token']}"}
    taken = await client.patch("/auth/me", headers=headers, json={"email": "BOB@example.com"})
    check_problem(taken, await taken.json(), 409, "conflict")
    for body, field in (
        ({"email": "not-an-email"}, "email"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "x" * 101}, "display_name"),
        ({"role": "admin"}, "role"),
        ({"image": 5}, "image"),
    ):
        response = await client.patch("/auth/me", headers=headers, json=body)
        problem = await response.json()
        check_problem(response, problem, 422, "validation")
        assert problem["errors"][0]["field"] == field
    response = await client.patch("/auth/me", json={"display_name": "Nobody"})
    check_problem(response, await response.json(), 401, "unauthorized")
    me = await (await client.get("/auth/me", headers=headers)).json()
    assert (me["email"], me["display_name"]) == ("ann@example.com", "Ann")


async def test_delete_me_removes_the_account_and_everything_that_is_its(client: Client) -> None:
    ann = await _register(client)
    bob = await _register(client, email="bob@example.com")
    ann_headers = {"Authorization": f"Bearer {ann['access_token']}"}
    async with client.app[keys.sessionmaker].begin() as session:
        store = await factories.create_store(session)
        product = await factories.create_product(session)
        owners = {}
        for who in (ann, bob):
            user = await session.get(User, who["user"]["id"])
            assert user is not None
            purchase = await factories.create_purchase(
                session, user=user, store=store, purchased=date(2024, 1, 1), items=[(product, "1", "2.00")]
            )
            item = (
                await session.execute(select(PurchaseItem).where(PurchaseItem.purchase_id == purchase.id))
            ).scalar_one()
            observed = await factories.create_price(
                session,
                product=product,
                store=store,
                observed=date(2024, 1, 1),
                regular="2.00",
                purchase_item_id=item.id,
            )
            owners[user.id] = observed.id
            session.add(UserStoreAccount(user_id=user.id, store_id=store.id, session_data="x", status="active"))
            session.add(PriceTargetAlert(user_id=user.id, normalized_product_id=product.id, target_price=Decimal(1)))
            await factories.create_session_token(session, user=user)
    for path, body in (
        ("/api/v1/shopping/lists", {"name": "Weekly", "items": [{"name": "milk", "quantity": 1}]}),
        ("/api/v1/alerts/settings", None),
    ):
        if body is None:
            settings = {"price_increase_threshold_pct": 7, "shrinkflation_enabled": False, "email_notifications": True}
            assert (await client.put(path, headers=ann_headers, json=settings)).status == 200
        else:
            assert (await client.post(path, headers=ann_headers, json=body)).status == 201

    ingest, history = client.app[keys.ingest], client.app[keys.bus]
    for who in (ann, bob):  # events in each one's history: ann's receipts and syncs go with her account
        payload = {"user_id": who["user"]["id"], "store_slug": "kroger", "job_id": "j", "status": "running"}
        await ingest.publish("cartsnitch.sync.progress", payload, service="test", source="test")

    response = await client.delete("/auth/me", headers=ann_headers)
    assert response.status == 204
    assert (await history.read(channels_bus.user_audience(ann["user"]["id"]), None, 10)).events == []
    assert len((await history.read(channels_bus.user_audience(bob["user"]["id"]), None, 10)).events) == 1
    response = await client.get("/auth/me", headers=ann_headers)
    check_problem(response, await response.json(), 401, "unauthorized")
    login = await client.post("/auth/login", json={"email": "ann@example.com", "password": "s3cret-password"})
    check_problem(login, await login.json(), 401, "unauthorized")

    async with client.app[keys.sessionmaker]() as session:
        for model in (
            User,
            Account,
            Session,
            RefreshFamily,
            Purchase,
            UserStoreAccount,
            PriceTargetAlert,
            ShoppingList,
            AlertSettings,
        ):
            owner = model.id if model is User else model.user_id
            owners_left = set((await session.execute(select(owner))).scalars())
            assert ann["user"]["id"] not in owners_left, model.__name__
            assert bob["user"]["id"] in owners_left or model in (ShoppingList, AlertSettings), model.__name__
        items = (await session.execute(select(PurchaseItem.purchase_id))).scalars().all()
        assert len(items) == 1  # Bob's
        kept = {row.id: row.purchase_item_id for row in (await session.execute(select(PriceHistory))).scalars()}
        assert kept[owners[ann["user"]["id"]]] is None  # the observation stays, detached from the deleted item
        assert kept[owners[bob["user"]["id"]]] is not None
    bob_me = await client.get("/auth/me", headers={"Authorization": f"Bearer {bob['access_token']}"})
    assert bob_me.status == 200
    again = await client.delete("/auth/me", headers=ann_headers)
    check_problem(again, await again.json(), 401, "unauthorized")


async def test_writes_racing_the_deletion_of_their_account_are_refused_not_a_500(client: Client) -> None:
    """A list saved (or a session started) while the account is deleted: the write finds its user gone (a foreign
    key the deletion broke): a 401 or a 409 problem, never an internal error."""
    statuses: list[int] = []
    for n in range(4):
        registered = await _register(client, email=f"gone{n}@example.com")
        headers = {"Authorization": f"Bearer {registered['access_token']}"}
        raced = await asyncio.gather(
            client.post("/api/v1/shopping/lists", headers=headers, json={"name": "L", "items": [{"name": "a"}]}),
            client.delete("/auth/me", headers=headers),
            client.post("/auth/login", json={"email": f"gone{n}@example.com", "password": "s3cret-password"}),
        )
        assert raced[1].status == 204
        for response in (raced[0], raced[2]):
            statuses.append(response.status)
            if response.status >= 400:
                slug = "unauthorized" if response.status == 401 else "conflict"
                check_problem(response, await response.json(), response.status, slug)
    assert set(statuses) <= {200, 201, 401, 409}, statuses
