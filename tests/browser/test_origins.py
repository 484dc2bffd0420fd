"""What a page on a site the hub does not list (``CARTSNITCH_CORS_ORIGINS``) can and cannot do in a real browser:
public data over every channel, yes; a user namespace, or a change made with the user's session cookie, no."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

from playwright.sync_api import expect

from hub.store import users
from hub.store.engine import build_engine, build_sessionmaker
from tests import factories
from tests.browser.harness import HubProcess, StaticSite, Tab, run_async
from tests.browser.hub_client import HubClient, login

PRICES_UPDATED = "cartsnitch.prices.updated"
REFUSED_403 = "Failed to load resource: the server responded with a status of 403 (Forbidden)"


def _store_slug(hub: HubProcess, store_id: str) -> str:
    slug: str = next(s["slug"] for s in hub.get_json("/api/v1/stores") if s["id"] == store_id)
    return slug


def test_a_page_on_an_unlisted_origin_follows_public_data_but_not_a_user_namespace(
    tab: Tab, hub: HubProcess, unlisted_origin: StaticSite
) -> None:
    assert unlisted_origin.origin not in hub.settings["CARTSNITCH_CORS_ORIGINS"]
    product = hub.get_json("/api/v1/public/store-comparison")["products"][2]
    product_id = product["product_id"]
    room = f"trend:{product_id}"
    client = HubClient(tab, unlisted_origin, hub)

    assert client.call("connect", {"namespace": "/public"})["ok"] is True
    ack = client.call("subscribe", room)
    assert ack["ok"] is True and ack["room"] == room
    read = client.api("GET", f"/api/v1/public/trends/{product_id}")
    assert read["status"] == 200 and read["body"] == ack["snapshot"]
    stream_url = f"{hub.url}/api/v1/public/stream?room={quote(room)}"
    assert client.call("openStream", "trend", stream_url, ["snapshot", PRICES_UPDATED])["opened"] is True

    store = product["prices"][0]
    hub.publish_price(
        product_id=product_id,
        store_id=store["store_id"],
        store_slug=_store_slug(hub, store["store_id"]),
        regular_price=Decimal("2.37"),
    )
    # once from the socket, once from the SSE stream
    expect(tab.page.locator("#events li")).to_have_text([f"{PRICES_UPDATED} 2.37", f"{PRICES_UPDATED} 2.37"])
    socket_event, stream_event = client.state()["events"]
    assert socket_event == stream_event and socket_event["payload"]["regular_price"] == 2.37
    snapshot, update = client.call("streamState", "trend")["events"]
    assert snapshot["type"] == "snapshot" and snapshot["data"]["snapshot"] == read["body"]
    assert update["lastEventId"] == socket_event["id"]  # the room's history position, the same on both
    client.call("closeStream", "trend")

    token, user_id = login(hub)
    client.call("useToken", token, user_id)
    refused = client.call("connect")
    assert refused["ok"] is False, refused
    problem: dict[str, Any] = refused["data"]
    assert problem["status"] == 403 and unlisted_origin.origin in problem["detail"], problem
    tab.assert_clean()


def _session_cookie(hub: HubProcess) -> str:
    """A Better-Auth session of the demo user, written in the hub's database as Better-Auth would."""

    async def create() -> str:
        engine = build_engine(hub.database_url)
        try:
            async with build_sessionmaker(engine).begin() as session:
                user = await users.get_user_by_email(session, email=hub.demo_email)
                assert user is not None
                return await factories.create_session_token(session, user=user)
        finally:
            await engine.dispose()

    return run_async(create)


def test_a_page_on_an_unlisted_origin_cannot_change_anything_with_the_session_cookie(
    tab: Tab, hub: HubProcess, second_origin: StaticSite, unlisted_origin: StaticSite
) -> None:
    token = _session_cookie(hub)
    tab.context.add_cookies(
        [{"name": "better-auth.session_token", "value": token, "url": hub.url, "httpOnly": True, "sameSite": "Lax"}]
    )
    page = tab.page
    slug = hub.get_json("/api/v1/stores")[0]["slug"]
    stranger = HubClient(tab, unlisted_origin, hub)

    def sync_job() -> Any:
        status = hub.request("GET", "/api/v1/scraping/status", headers={"Authorization": f"Bearer {bearer}"})
        return next(s["job_id"] for s in status.json() if s["store_slug"] == slug)

    bearer, _user_id = login(hub)
    job_before = sync_job()
    # a CORS fetch: the cookie goes out, and the page is not even allowed to read the answer
    sync_path = f"/api/v1/scraping/{slug}/sync"
    seen = stranger.api("POST", sync_path, bearer=False, credentials="include")
    assert seen["status"] == 0 and "Failed to fetch" in seen["error"]
    # the same as a "no-cors" fetch, whose answer the browser hands over opaque (Playwright sees it)
    with page.expect_response(lambda r: r.url.endswith(f"/scraping/{slug}/sync")) as sync:
        opaque = stranger.api("POST", sync_path, bearer=False, credentials="include", mode="no-cors")
    assert opaque["type"] == "opaque"
    # 403, not 401: the cookie went out with it (the browser hides an opaque answer's headers and body)
    assert sync.value.status == 403
    assert sync_job() == job_before  # no sync started

    with page.expect_navigation() as navigation:
        stranger.call("submitForm", "/auth/logout")
    answer = navigation.value
    assert answer is not None and answer.url == hub.url + "/auth/logout"
    assert f"better-auth.session_token={token}" in answer.request.all_headers()["cookie"]
    assert answer.status == 403 and answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 403 and "allowed origin" in problem["detail"]
    expect(page.locator("body")).to_contain_text('"status":403')

    friend = HubClient(tab, second_origin, hub)
    me = friend.api("GET", "/auth/me", bearer=False, credentials="include")
    assert me["status"] == 200 and me["body"]["email"] == hub.demo_email  # the session survived
    signed_out = friend.api("POST", "/auth/logout", bearer=False, credentials="include")
    assert signed_out["status"] == 204  # the same request from an allowed origin is honoured
    assert friend.api("GET", "/auth/me", bearer=False, credentials="include")["status"] == 401

    expected = (
        f"{hub.url}/api/v1/scraping/{slug}/sync",  # the CORS refusal, its failed request, the opaque 403
        "Failed to load resource: net::ERR_FAILED",
        REFUSED_403,  # the opaque fetch and the form
        f"HTTP 403 {hub.url}/auth/logout",
        "status of 401 (Unauthorized)",  # /auth/me after the sign-out
        f"HTTP 401 {hub.url}/auth/me",
        "status of 404 (Not Found)",  # the browser asks for /favicon.ico when it shows the hub's answer
    )
    assert tab.problems(allow=expected) == []
