from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet
from sqlalchemy import select

from hub import keys
from hub.app import create_app
from hub.settings import Settings
from hub.store.models import Store, SyncJob, User, UserStoreAccount
from tests import factories
from tests.responses import check_problem

Client = TestClient[Any, Any]
API = "/api/v1"
SECRET = "hunter2-very-secret-pa$$"
CREDENTIALS = {"username": "ann@example.com", "password": SECRET}


async def _setup(client: Client) -> tuple[User, User, Store, Store]:
    async with client.app[keys.sessionmaker].begin() as session:
        ann = await factories.create_user(session)
        bob = await factories.create_user(session)
        kroger = await factories.create_store(session, name="Kroger", slug="kroger", logo_url="https://k.example/l.png")
        meijer = await factories.create_store(session, name="Meijer", slug="meijer")
    return ann, bob, kroger, meijer


async def test_list_stores_is_public_ordered_by_name_and_cached(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        meijer = await factories.create_store(session, name="Meijer", slug="meijer")
        await factories.create_store(session, name="Kroger", slug="kroger", logo_url="https://k.example/l.png")
    response = await client.get(f"{API}/stores")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert [s["slug"] for s in body] == ["kroger", "meijer"]
    assert body[0] == {
        "id": body[0]["id"],
        "name": "Kroger",
        "slug": "kroger",
        "logo_url": "https://k.example/l.png",
        "supported": True,
    }
    assert body[1]["id"] == str(meijer.id) and body[1]["logo_url"] is None
    etag = response.headers["ETag"]
    again = await client.get(f"{API}/stores", headers={"If-None-Match": etag})
    assert again.status == 304


async def test_list_stores_marks_unsupported_stores(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(supported_stores=("meijer",))))
    await _setup(client)
    response = await client.get(f"{API}/stores")
    assert response.status == 200
    assert {s["slug"]: s["supported"] for s in await response.json()} == {"kroger": False, "meijer": True}


async def test_my_stores_show_account_and_newest_sync_status(client: Client) -> None:
    ann, bob, kroger, meijer = await _setup(client)
    synced = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    async with client.app[keys.sessionmaker].begin() as session:
        session.add(
            UserStoreAccount(
                user_id=ann.id, store_id=kroger.id, session_data="x", last_sync_at=synced, status="expired"
            )
        )
        session.add(UserStoreAccount(user_id=bob.id, store_id=meijer.id, session_data="x"))
        base = datetime(2024, 5, 1, tzinfo=UTC)
        for offset, status in ((0, "succeeded"), (2, "failed"), (1, "running")):
            session.add(
                SyncJob(
                    user_id=ann.id,
                    store_id=kroger.id,
                    status=status,
                    mode="manual",
                    created_at=base + timedelta(hours=offset),
                )
            )
        session.add(SyncJob(user_id=bob.id, store_id=meijer.id, status="running", mode="manual"))
    response = await client.get(f"{API}/me/stores", headers=await factories.auth_headers(client.app, ann.id))
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    # as the old gateway: one row per account of the user's, `connected` when it is active, `sync_status` its status
    assert [item["store"]["slug"] for item in body] == ["kroger"]
    assert body[0] == {
        "store": {
            "id": str(kroger.id),
            "name": "Kroger",
            "slug": "kroger",
            "logo_url": "https://k.example/l.png",
            "supported": True,
        },
        "connected": False,
        "last_sync_at": "2024-05-01T12:30:00Z",
        "sync_status": "expired",
        "last_job_status": "failed",
    }
    # Bob's account and job at Meijer are not Ann's
    bobs = await client.get(f"{API}/me/stores", headers=await factories.auth_headers(client.app, bob.id))
    [bob_meijer] = await bobs.json()
    assert bob_meijer["store"]["slug"] == "meijer" and bob_meijer["connected"] is True
    assert (bob_meijer["sync_status"], bob_meijer["last_job_status"]) == ("active", "running")
    async with client.app[keys.sessionmaker].begin() as session:
        newcomer = await factories.create_user(session)
    nothing = await client.get(f"{API}/me/stores", headers=await factories.auth_headers(client.app, newcomer.id))
    assert await nothing.json() == []


async def test_user_store_routes_require_credentials(client: Client) -> None:
    await _setup(client)
    for method, path, kwargs in (
        ("GET", f"{API}/me/stores", {}),
        ("POST", f"{API}/me/stores/kroger/connect", {"json": {"credentials": CREDENTIALS}}),
        ("DELETE", f"{API}/me/stores/kroger", {}),
        ("GET", f"{API}/me/email-in-address", {}),
    ):
        response = await client.request(method, path, **kwargs)
        check_problem(response, await response.json(), 401, "unauthorized")


async def test_connect_stores_ciphertext_and_never_returns_credentials(client: Client) -> None:
    ann, _, kroger, _ = await _setup(client)
    headers = await factories.auth_headers(client.app, ann.id)
    response = await client.post(f"{API}/me/stores/kroger/connect", json={"credentials": CREDENTIALS}, headers=headers)
    assert response.status == 201, await response.text()
    assert response.headers["Content-Type"].startswith("application/json")
    text = await response.text()
    assert SECRET not in text
    body = json.loads(text)
    assert body == {
        "store": {
            "id": str(kroger.id),
            "name": "Kroger",
            "slug": "kroger",
            "logo_url": "https://k.example/l.png",
            "supported": True,
        },
        "connected": True,
        "last_sync_at": None,
        "sync_status": "active",
        "last_job_status": None,
    }
    async with client.app[keys.sessionmaker]() as session:
        account = (await session.execute(select(UserStoreAccount))).scalar_one()
    assert account.user_id == ann.id and account.store_id == kroger.id
    assert account.session_data is not None
    assert SECRET not in account.session_data and "username" not in account.session_data
    key = client.app[keys.settings].fernet_key
    assert key is not None
    assert orjson.loads(Fernet(key.encode()).decrypt(account.session_data.encode())) == CREDENTIALS

    listing = await client.get(f"{API}/me/stores", headers=headers)
    assert listing.status == 200
    listed = await listing.text()
    assert SECRET not in listed and account.session_data not in listed
    assert [(item["store"]["slug"], item["connected"]) for item in json.loads(listed)] == [("kroger", True)]

    again = await client.post(f"{API}/me/stores/kroger/connect", json={"credentials": CREDENTIALS}, headers=headers)
    check_problem(again, await again.json(), 409, "conflict")


async def test_connect_renews_an_expired_account(client: Client) -> None:
    ann, _, kroger, _ = await _setup(client)
    async with client.app[keys.sessionmaker].begin() as session:
        session.add(
            UserStoreAccount(
                user_id=ann.id,
                store_id=kroger.id,
                session_data="old",
                status="expired",
                session_expires_at=datetime(2024, 1, 1, tzinfo=UTC),
            )
        )
    response = await client.post(
        f"{API}/me/stores/kroger/connect",
        json={"credentials": CREDENTIALS},
        headers=await factories.auth_headers(client.app, ann.id),
    )
    assert response.status == 201
    assert (await response.json())["sync_status"] == "active"
    async with client.app[keys.sessionmaker]() as session:
        account = (await session.execute(select(UserStoreAccount))).scalar_one()
    assert account.session_data != "old" and account.session_expires_at is None and account.status == "active"


async def test_connect_refuses_unknown_unsupported_and_bad_bodies(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(supported_stores=("kroger",))))
    ann, *_ = await _setup(client)
    headers = await factories.auth_headers(client.app, ann.id)
    for slug in ("nope", "kro%00ger"):
        unknown = await client.post(
            f"{API}/me/stores/{slug}/connect", json={"credentials": CREDENTIALS}, headers=headers
        )
        check_problem(unknown, await unknown.json(), 404, "not-found")
    unsupported = await client.post(
        f"{API}/me/stores/meijer/connect", json={"credentials": CREDENTIALS}, headers=headers
    )
    body = await unsupported.json()
    check_problem(unsupported, body, 422, "validation")
    assert body["errors"][0]["field"] == "store_slug"
    for bad in (
        {},
        {"credentials": "user:pass"},
        {"credentials": {}},
        {"credentials": {"pin": 1234}},
        {"credentials": {f"k{i}": "v" for i in range(21)}},
        {"credentials": {"cookie": "x" * 8200}},
        {"credentials": CREDENTIALS, "extra": True},
    ):
        response = await client.post(f"{API}/me/stores/kroger/connect", json=bad, headers=headers)
        problem = await response.json()
        check_problem(response, problem, 422, "validation")
        assert problem["errors"] and {"field", "message", "type"} <= set(problem["errors"][0])
    async with client.app[keys.sessionmaker]() as session:
        assert (await session.execute(select(UserStoreAccount))).first() is None


async def test_connect_without_a_fernet_key_is_503(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(fernet_key=None)))
    ann, *_ = await _setup(client)
    response = await client.post(
        f"{API}/me/stores/kroger/connect",
        json={"credentials": CREDENTIALS},
        headers=await factories.auth_headers(client.app, ann.id),
    )
    body = await response.json()
    check_problem(response, body, 503, "service-unavailable")
    assert "CARTSNITCH_FERNET_KEY" in body["detail"]


async def test_disconnect_forgets_only_the_users_account(client: Client) -> None:
    ann, bob, kroger, _ = await _setup(client)
    async with client.app[keys.sessionmaker].begin() as session:
        session.add(UserStoreAccount(user_id=ann.id, store_id=kroger.id, session_data="x"))
    bob_headers = await factories.auth_headers(client.app, bob.id)
    not_bobs = await client.delete(f"{API}/me/stores/kroger", headers=bob_headers)
    check_problem(not_bobs, await not_bobs.json(), 404, "not-found")
    for slug in ("nope", "%00", "x" * 300):
        unknown = await client.delete(f"{API}/me/stores/{slug}", headers=bob_headers)
        check_problem(unknown, await unknown.json(), 404, "not-found")

    ann_headers = await factories.auth_headers(client.app, ann.id)
    response = await client.delete(f"{API}/me/stores/kroger", headers=ann_headers)
    assert response.status == 204
    async with client.app[keys.sessionmaker]() as session:
        assert (await session.execute(select(UserStoreAccount))).first() is None
    twice = await client.delete(f"{API}/me/stores/kroger", headers=ann_headers)
    check_problem(twice, await twice.json(), 404, "not-found")


async def test_email_in_address_uses_the_inbound_token(client: Client) -> None:
    ann, bob, *_ = await _setup(client)
    response = await client.get(f"{API}/me/email-in-address", headers=await factories.auth_headers(client.app, ann.id))
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert body["email_address"] == f"receipts+{ann.email_inbound_token}@receipts.cartsnitch.com"
    assert bob.email_inbound_token not in body["email_address"]
    assert body["instructions"]
