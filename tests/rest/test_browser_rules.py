"""What a browser meets at the HTTP level: CORS (credentialed allow-list for user routes, any origin for public
reads), CSRF for cookie-authenticated changes, whole request bodies, revalidated caches, docs without a CDN."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub import keys
from rest.routes import all_operations, is_public_read
from tests import factories
from tests.responses import check_problem

Client = TestClient[Any, Any]
ALLOWED = "http://localhost:5173"
FOREIGN = "https://dashboard.elsewhere.example"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)


async def test_every_method_of_every_path_passes_its_preflight_from_an_allowed_origin(client: Client) -> None:
    checked = 0
    for op in all_operations():
        response = await client.options(
            _concrete(op.path),
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": op.method,
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert response.status == 200, (op.method, op.path, await response.text())
        assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        checked += 1
    assert checked > 50


async def test_event_streams_pass_the_preflight_an_eventsource_polyfill_sends(client: Client) -> None:
    """A polyfill (for headers a native EventSource cannot send) asks for Last-Event-ID and Cache-Control."""
    for path, origin in (("/api/v1/me/events/stream", ALLOWED), ("/api/v1/public/stream", FOREIGN)):
        response = await client.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization,cache-control,last-event-id",
            },
        )
        assert response.status == 200, (path, await response.text())
        allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "cache-control", "last-event-id"} <= allowed


async def test_public_reads_answer_any_origin_without_credentials(client: Client) -> None:
    public = [op for op in all_operations() if is_public_read(op)]
    assert {"/api/v1/public/inflation", "/api/v1/stores", "/health"} <= {op.path for op in public}
    for path in ("/api/v1/public/inflation", "/api/v1/stores", "/health", "/openapi.json"):
        response = await client.get(path, headers={"Origin": FOREIGN})
        assert response.status == 200, path
        assert response.headers["Access-Control-Allow-Origin"] == FOREIGN
        assert "Access-Control-Allow-Credentials" not in response.headers
        assert "Origin" in response.headers.getall("Vary")
        preflight = await client.options(path, headers={"Origin": FOREIGN, "Access-Control-Request-Method": "GET"})
        assert preflight.status == 200 and preflight.headers["Access-Control-Allow-Origin"] == FOREIGN
        assert "Access-Control-Allow-Credentials" not in preflight.headers


async def test_user_routes_keep_the_credentialed_allow_list(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    headers = await factories.auth_headers(client.app, user.id)
    allowed = await client.get("/api/v1/purchases", headers={**headers, "Origin": ALLOWED})
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    foreign = await client.get("/api/v1/purchases", headers={**headers, "Origin": FOREIGN})
    assert "Access-Control-Allow-Origin" not in foreign.headers
    preflight = await client.options(
        "/api/v1/purchases", headers={"Origin": FOREIGN, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status == 403


async def test_a_listed_origin_keeps_its_credentials_on_public_reads(client: Client) -> None:
    # the PWA sends its credentials everywhere; a public read answers it like a user route
    response = await client.get("/api/v1/public/inflation", headers={"Origin": ALLOWED})
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.parametrize(
    ("method", "path", "status", "slug"),
    [
        ("GET", "/api/v1/nope", 404, "not-found"),
        ("POST", "/api/v1/purchases", 405, "method-not-allowed"),
        ("DELETE", "/api/v1/stores", 405, "method-not-allowed"),
    ],
)
async def test_an_error_no_route_handled_is_readable_by_a_listed_origin(
    client: Client, method: str, path: str, status: int, slug: str
) -> None:
    """A 404 or 405 comes before any route's CORS handling; a simple request (no preflight) from the PWA must still
    be able to read it, and its Allow header, rather than meet an opaque network error."""
    response = await client.request(method, path, headers={"Origin": ALLOWED, "Content-Type": "text/plain"}, data="x")
    check_problem(response, await response.json(content_type=None), status, slug)
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Allow" in response.headers["Access-Control-Expose-Headers"].split(",")
    foreign = await client.request(method, path, headers={"Origin": FOREIGN})
    assert "Access-Control-Allow-Origin" not in foreign.headers


async def test_a_refused_preflight_says_what_was_refused(client: Client) -> None:
    response = await client.options(
        "/api/v1/purchases", headers={"Origin": FOREIGN, "Access-Control-Request-Method": "GET"}
    )
    body = await response.json(content_type=None)
    check_problem(response, body, 403, "forbidden")
    assert body["detail"] == f"CORS preflight refused: origin '{FOREIGN}' is not allowed"
    header = await client.options(
        "/api/v1/purchases",
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-foo"},
    )
    body = await header.json(content_type=None)
    check_problem(header, body, 403, "forbidden")
    assert body["detail"] == "CORS preflight refused: headers are not allowed: X-FOO"


async def test_credentials_and_user_data_are_never_stored_by_a_cache(client: Client) -> None:
    """RFC 6749 §5.1: a response carrying tokens is ``no-store``; so is a user's data; public reads stay cacheable
    (revalidated: ``public, no-cache`` with an ETag)."""
    email, password = "cache@example.com", "a long enough password"
    register = await client.post("/auth/register", json={"email": email, "password": password})
    assert register.status == 201
    assert register.headers["Cache-Control"] == "no-store"
    login = await client.post("/auth/login", json={"email": email, "password": password})
    assert login.headers["Cache-Control"] == "no-store"
    tokens = await login.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.headers["Cache-Control"] == "no-store"
    for path in ("/auth/me", "/api/v1/me/email-in-address"):
        assert (await client.get(path, headers=headers)).headers["Cache-Control"] == "no-store", path
    ticket = await client.post("/api/v1/me/events/ticket", headers=headers)
    assert ticket.headers["Cache-Control"] == "no-store"
    assert (await client.get("/api/v1/purchases", headers=headers)).headers["Cache-Control"] == "no-store"
    assert (await client.get("/api/v1/public/inflation")).headers["Cache-Control"] == "public, no-cache"


@pytest.fixture
async def cookie_user(client: Client) -> tuple[Any, str]:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        await factories.create_store(session, slug="kroger", name="Kroger")
        token = await factories.create_session_token(session, user=user)
    return user, token


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Origin": FOREIGN}, False),
        ({"Origin": "null"}, False),
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),
        ({"Origin": ALLOWED}, True),
        ({"Sec-Fetch-Site": "same-origin"}, True),
        ({"Sec-Fetch-Site": "none"}, True),
        ({}, False),
    ],
    ids=["foreign", "null", "cross-site", "same-site", "allowed", "same-origin", "user-started", "neither"],
)
async def test_cookie_authenticated_changes_must_come_from_an_allowed_origin(
    client: Client, cookie_user: tuple[Any, str], headers: dict[str, str], allowed: bool
) -> None:
    _user, token = cookie_user
    cookies = {"better-auth.session_token": f"{token}.c2ln"}
    client.session.cookie_jar.clear()
    response = await client.post("/api/v1/scraping/kroger/sync", headers=headers, cookies=cookies)
    if allowed:
        assert response.status in (202, 404, 409), await response.text()
    else:
        check_problem(response, await response.json(), 403, "forbidden")
    # a cookie-authenticated read is not a change: no origin rule
    client.session.cookie_jar.clear()
    read = await client.get("/auth/me", headers=headers, cookies=cookies)
    assert read.status == 200


async def test_a_form_post_from_another_site_cannot_sign_the_user_out(
    client: Client, cookie_user: tuple[Any, str]
) -> None:
    _user, token = cookie_user
    cookies = {"better-auth.session_token": f"{token}.c2ln"}
    client.session.cookie_jar.clear()
    response = await client.post(
        "/auth/logout",
        data="x=1",
        headers={"Origin": FOREIGN, "Content-Type": "application/x-www-form-urlencoded"},
        cookies=cookies,
    )
    check_problem(response, await response.json(), 403, "forbidden")
    client.session.cookie_jar.clear()
    assert (await client.get("/auth/me", cookies=cookies)).status == 200


async def test_the_same_origin_page_may_change_with_its_cookie(client: Client, cookie_user: tuple[Any, str]) -> None:
    _user, token = cookie_user
    host = urlsplit(str(client.make_url("/"))).netloc
    client.session.cookie_jar.clear()
    response = await client.post(
        "/auth/logout", headers={"Origin": f"http://{host}"}, cookies={"better-auth.session_token": f"{token}.c2ln"}
    )
    assert response.status == 204


async def test_bearer_changes_are_not_bound_to_an_origin(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    headers = await factories.auth_headers(client.app, user.id)
    response = await client.post(
        "/api/v1/shopping/lists", headers={**headers, "Origin": FOREIGN}, json={"name": "weekly", "items": []}
    )
    assert response.status == 201, await response.text()


async def _raw_post(server: TestServer, path: str, headers: dict[str, str], pieces: list[bytes], pause: float) -> bytes:
    """A request written in pieces with pauses between them, as a slow mobile link delivers it."""
    parts = urlsplit(str(server.make_url("/")))
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n".encode())
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(pause)
    response = await asyncio.wait_for(reader.read(1 << 16), 10)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return response


async def test_a_json_body_in_two_pieces_is_read_whole(server: TestServer) -> None:
    body = b'{"email":"x@example.com","password":"nope-nope"}'
    response = await _raw_post(
        server,
        "/auth/login",
        {"Content-Type": "application/json", "Content-Length": str(len(body))},
        [body[:13], body[13:]],
        0.5,
    )
    assert response.startswith(b"HTTP/1.1 401"), response[:200]  # read and checked, not "Malformed JSON"


async def test_a_large_chunked_json_body_is_read_whole(server: TestServer, user: Any) -> None:
    headers = await factories.auth_headers(server.app, user.id)
    items = [{"name": f"item {i} " + "x" * 40, "quantity": 1} for i in range(9000)]
    body = orjson.dumps({"name": "big", "items": items})
    assert 500_000 < len(body) < 1 << 20
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    encoded = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks] + [b"0\r\n\r\n"]
    response = await _raw_post(
        server,
        "/api/v1/shopping/lists",
        {**headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        encoded,
        0.02,
    )
    status = response.split(b"\r\n", 1)[0]
    assert b" 400 " not in status, response[:300]  # the body was parsed (a size rule on items may refuse it)


async def test_a_body_over_the_limit_is_a_413_problem_chunked_or_not(server: TestServer) -> None:
    body = b'{"email":"' + b"x" * (1 << 20) + b'"}'
    plain = await _raw_post(
        server, "/auth/login", {"Content-Type": "application/json", "Content-Length": str(len(body))}, [body], 0
    )
    assert plain.startswith(b"HTTP/1.1 413"), plain[:200]
    assert b"application/problem+json" in plain
    chunked = await _raw_post(
        server,
        "/auth/login",
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        [b"%x\r\n%s\r\n" % (len(body), body), b"0\r\n\r\n"],
        0,
    )
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    assert b"application/problem+json" in chunked


async def test_cached_reads_are_revalidated_by_the_browser(client: Client) -> None:
    public = await client.get("/api/v1/public/inflation")
    assert public.headers["Cache-Control"] == "public, no-cache"
    etag = public.headers["ETag"]
    again = await client.get("/api/v1/public/inflation", headers={"If-None-Match": etag})
    assert again.status == 304
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        product = await factories.create_product(session)
    headers = await factories.auth_headers(client.app, user.id)
    private = await client.get(f"/api/v1/products/{product.id}", headers=headers)
    assert private.status == 200
    assert private.headers["Cache-Control"] == "private, no-cache"


async def test_docs_load_nothing_from_another_host(client: Client) -> None:
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status == 200
        html = await response.text()
        assert "://" not in html and 'src="//' not in html and 'href="//' not in html
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert 'rel="icon" href="/docs/assets/' in html  # else the browser asks for /favicon.ico: a 404
        for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
            fetched = await client.get(asset)
            assert fetched.status == 200, asset
            body = await fetched.read()
            assert len(body) > 100, asset
            # an image a bundle draws from another host (ReDoc's Redocly logo) is a request off the machine
            assert not re.search(rb"""src:\s*["']https?://""", body), asset
    missing = await client.get("/docs/assets/secrets.json")
    check_problem(missing, await missing.json(content_type=None), 404, "not-found")


async def test_a_docs_asset_serves_ranges_and_refuses_an_unsatisfiable_one_with_a_problem(client: Client) -> None:
    whole = await (await client.get("/docs/assets/swagger-ui.css")).read()
    part = await client.get("/docs/assets/swagger-ui.css", headers={"Range": "bytes=10-19"})
    assert part.status == 206 and await part.read() == whole[10:20]
    tail = await client.get("/docs/assets/swagger-ui.css", headers={"Range": "bytes=-5"})
    assert tail.status == 206 and await tail.read() == whole[-5:]
    for unsatisfiable in (f"bytes={len(whole)}-", "bytes=99999999-", "bytes=x-y", "bytes=5-1"):
        refused = await client.get("/docs/assets/swagger-ui.css", headers={"Range": unsatisfiable})
        assert refused.status == 416, unsatisfiable
        assert refused.headers["Content-Type"].startswith("application/problem+json"), unsatisfiable
        assert refused.headers["Content-Range"] == f"bytes */{len(whole)}"
        body = await refused.json(content_type=None)
        assert body["status"] == 416 and body["instance"] == "/docs/assets/swagger-ui.css"


async def test_public_stream_answers_any_origin(client: Client) -> None:
    response = await client.get("/api/v1/public/stream?room=inflation", headers={"Origin": FOREIGN}, timeout=5)
    assert response.status in (200, 404)
    assert response.headers["Access-Control-Allow-Origin"] == FOREIGN
    assert "Access-Control-Allow-Credentials" not in response.headers
    response.close()
