"""HTTP edges against the specifications: RFC 9110 (HEAD, OPTIONS, Expect, unknown methods, 401 challenges),
RFC 9457 on every refusal, and input a client shapes to hurt the server (deep nesting, forged cursors)."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from channels.payloads import utc_form
from hub import keys
from rest.validation import MAX_JSON_DEPTH
from tests import factories
from tests.responses import expect_json, expect_problem

Client = TestClient[Any, Any]
PROGRESS = {"store_slug": "kroger", "job_id": "j1", "status": "running", "progress": 0.5}


@pytest.fixture
def stack(sqlite_url: str) -> tuple[str, str | None]:
    """What these tests check happens before a query, or is the same on every database: one stack is enough."""
    return sqlite_url, None


def _nested(depth: int) -> bytes:
    """``{"name": [[…[]…]]}``: an object holding ``depth - 1`` nested arrays (``depth`` levels in all)."""
    return b'{"name":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def _cursor(*values: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).rstrip(b"=").decode()


async def _user_headers(client: Client) -> dict[str, str]:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    return await factories.auth_headers(client.app, user.id)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 490, 1000])
async def test_a_body_nested_too_deep_is_a_422_without_a_traceback(
    client: Client, depth: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = await client.post("/auth/register", data=_nested(depth), headers={"Content-Type": "application/json"})
    body = await expect_problem(response, 422)
    assert body["errors"][0]["type"] == "too_deep"
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


async def test_a_body_at_the_depth_limit_is_validated_as_usual(client: Client) -> None:
    response = await client.post(
        "/auth/register", data=_nested(MAX_JSON_DEPTH), headers={"Content-Type": "application/json"}
    )
    body = await expect_problem(response, 422)
    assert {error["type"] for error in body["errors"]} != {"too_deep"}


async def test_a_nul_is_still_refused_at_any_depth_and_an_escaped_backslash_is_not_one(client: Client) -> None:
    headers = await _user_headers(client)
    nul = await client.post(
        "/api/v1/shopping/lists",
        data=b'{"name": "milk\\u0000", "items": []}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert (await expect_problem(nul, 422))["errors"][0]["field"] == "name"
    literal = await client.post(
        "/api/v1/shopping/lists",
        data=b'{"name": "a\\\\u0000b", "items": []}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert (await expect_json(literal, 201))["name"] == "a\\u0000b"


async def test_a_deep_event_payload_is_a_422_on_the_internal_route(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    key = {"X-Service-Key": client.app[keys.settings].service_key or "", "Content-Type": "application/json"}
    payload = json.dumps({**PROGRESS, "user_id": user.id})[:-1] + ', "x": ' + "[" * 300 + "]" * 300 + "}"
    body = f'{{"event_type": "cartsnitch.sync.progress", "payload": {payload}}}'
    response = await client.post("/internal/events", data=body.encode(), headers=key)
    await expect_problem(response, 422)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-11-26T17:00:00+05:00", "2026-11-26T12:00:00+00:00"),
        ("2026-11-26T12:00:00", "2026-11-26T12:00:00+00:00"),
        ("2026-11-26T12:00:00Z", "2026-11-26T12:00:00Z"),
        ("2026-11-26T12:00:00.250+00:00", "2026-11-26T12:00:00.250+00:00"),
    ],
)
async def test_a_published_timestamp_is_carried_in_utc(client: Client, given: str, stored: str) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    key = {"X-Service-Key": client.app[keys.settings].service_key or ""}
    event = {"event_type": "cartsnitch.sync.progress", "payload": {**PROGRESS, "user_id": user.id}, "timestamp": given}
    await expect_json(await client.post("/internal/events", json=event, headers=key), 202)
    page = await expect_json(
        await client.get("/api/v1/me/events", headers=await factories.auth_headers(client.app, user.id))
    )
    assert [e["timestamp"] for e in page["events"]] == [stored]


@pytest.mark.parametrize(
    "given", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+05:00", "yesterday", "2026-11-26T" + "1" * 80]
)
async def test_a_timestamp_with_no_utc_form_is_a_422(client: Client, given: str) -> None:
    key = {"X-Service-Key": client.app[keys.settings].service_key or ""}
    event = {"event_type": "cartsnitch.sync.progress", "payload": {**PROGRESS, "user_id": "u1"}, "timestamp": given}
    body = await expect_problem(await client.post("/internal/events", json=event, headers=key), 422)
    assert "timestamp" in json.dumps(body)
    assert utc_form(given) is None


FORGED_CURSOR_LISTS = [
    ("/api/v1/coupons", ""),
    ("/api/v1/coupons/relevant", ""),
    ("/api/v1/alerts/targets", ""),
    ("/api/v1/shopping/lists", ""),
    ("/api/v1/alerts", "shr:"),
    ("/api/v1/alerts", "tgt:"),
    ("/api/v1/products", ""),
    ("/pwa/api/v1/coupons", ""),
    ("/pwa/api/v1/alerts", ""),
]


async def test_a_forged_cursor_out_of_the_calendar_is_a_422_on_every_list(client: Client) -> None:
    headers = await _user_headers(client)
    answers = {}
    for path, prefix in FORGED_CURSOR_LISTS:
        for moment in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"):
            cursor = _cursor(moment, prefix + "8d3f12e1-6d39-4c7d-bf7b-7a081a40af7f")
            response = await client.get(path, params={"cursor": cursor}, headers=headers)
            body = await response.json()
            answers[(path, prefix, moment)] = (response.status, body.get("errors", [{}])[0].get("field"))
    assert answers == dict.fromkeys(answers, (422, "cursor"))


@pytest.mark.parametrize("path", ["/health", "/api/v1/stores", "/openapi.json", "/api/v1/public/inflation"])
async def test_head_answers_every_get_resource_without_a_body(client: Client, path: str) -> None:
    got = await client.get(path)
    head = await client.head(path)
    assert head.status == got.status == 200
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert await head.read() == b""
    if "ETag" in got.headers:
        assert head.headers["ETag"] == got.headers["ETag"]


async def test_head_on_a_user_route_needs_credentials_like_get(client: Client) -> None:
    assert (await client.head("/api/v1/purchases")).status == 401
    assert (await client.head("/api/v1/purchases", headers=await _user_headers(client))).status == 200


async def test_head_on_an_event_stream_is_not_offered(client: Client) -> None:
    response = await client.head("/api/v1/public/stream", params={"room": "inflation"})
    assert response.status == 405
    assert "HEAD" not in response.headers["Allow"]


async def test_options_without_a_preflight_lists_the_methods(client: Client) -> None:
    plain = await client.options("/api/v1/shopping/lists")
    assert plain.status == 204
    assert set(plain.headers["Allow"].split(",")) == {"GET", "HEAD", "POST", "OPTIONS"}
    with_origin_only = await client.options("/health", headers={"Origin": "https://anywhere.example"})
    assert with_origin_only.status == 204 and "GET" in with_origin_only.headers["Allow"]
    preflight = await client.options(
        "/api/v1/shopping/lists",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"


async def test_internal_401_names_its_scheme(client: Client) -> None:
    response = await client.post("/internal/events", json={})
    await expect_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("X-Service-Key ")


async def test_an_unknown_expectation_is_a_417_problem_and_100_continue_still_works(client: Client) -> None:
    refused = await client.get("/health", headers={"Expect": "bogus-<script>"})
    body = await expect_problem(refused, 417)
    assert "script" not in json.dumps(body)
    assert body["instance"] == "/health" and "100-continue" in body["detail"]
    continued = await client.post("/auth/login", json={"email": "nobody@example.com", "password": "x"}, expect100=True)
    await expect_problem(continued, 401)


async def test_a_body_with_no_content_type_is_read_as_json_and_a_declared_other_type_is_a_415(client: Client) -> None:
    """The old gateway (FastAPI) parsed a body sent without a Content-Type as JSON; a body declared as something
    else is not guessed at."""
    body = b'{"email": "nobody@example.com", "password": "x"}'
    bare = await client.post("/auth/login", data=body, skip_auto_headers=["Content-Type"])
    assert "Content-Type" not in bare.request_info.headers
    await expect_problem(bare, 401)
    for declared in ("application/octet-stream", "text/plain", "application/x-www-form-urlencoded"):
        refused = await client.post("/auth/login", data=body, headers={"Content-Type": declared})
        assert (await expect_problem(refused, 415))["detail"] == "send the body as application/json"


async def test_a_trailing_slash_is_redirected_to_the_path_without_it_as_the_old_gateway_did(client: Client) -> None:
    """FastAPI's default (``redirect_slashes``): a 307, so the method and body are kept; readable by a listed
    origin; a path that does not exist either way stays a 404, and so does the Socket.IO endpoint's own slash."""
    headers = await _user_headers(client)
    origin = "http://localhost:5173"
    moved = await client.get(
        "/api/v1/stores/?page_size=2", headers={**headers, "Origin": origin}, allow_redirects=False
    )
    assert moved.status == 307
    assert moved.headers["Location"] == "/api/v1/stores?page_size=2"
    assert moved.headers["Access-Control-Allow-Origin"] == origin
    followed = await client.get("/api/v1/stores/", headers=headers)
    await expect_json(followed, 200)
    # a public read's redirect is readable from any origin (without credentials), a user's read's is not
    foreign = "https://dashboard.elsewhere.example"
    public = await client.get("/api/v1/public/products/?q=milk", headers={"Origin": foreign}, allow_redirects=False)
    assert public.status == 307 and public.headers["Access-Control-Allow-Origin"] == foreign
    assert "Access-Control-Allow-Credentials" not in public.headers
    private = await client.get("/api/v1/purchases/", headers={"Origin": foreign}, allow_redirects=False)
    assert private.status == 307 and "Access-Control-Allow-Origin" not in private.headers
    created = await client.post("/api/v1/shopping/lists/", json={"name": "Weekly"}, headers=headers)
    assert (await expect_json(created, 201))["name"] == "Weekly"
    assert [r.status for r in created.history] == [307]
    await expect_problem(await client.get("/api/v1/nope/", headers=headers, allow_redirects=False), 404)
    engine_io = await client.get("/socket.io/?EIO=4&transport=polling", allow_redirects=False)
    assert engine_io.status == 200
