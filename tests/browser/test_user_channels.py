"""A signed-in user's live channels in a real browser, from a web app on another (allowed) origin: sign in with
fetch, the official socket.io-client on ``/users/<id>`` over either transport, resume with ``last_event_id``, and
the per-user SSE stream opened with a ticket."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from playwright.sync_api import expect

from tests.browser.harness import HubProcess, StaticSite, Tab
from tests.browser.hub_client import HubClient, sync_progress

PROGRESS = "cartsnitch.sync.progress"
REFUSED_401 = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"


def test_a_page_signs_in_and_follows_its_store_sync_live(tab: Tab, hub: HubProcess, second_origin: StaticSite) -> None:
    client = HubClient(tab, second_origin, hub)
    client.login()
    joined = client.call("connect")
    assert joined["ok"] is True, joined
    stores = client.api("GET", "/api/v1/me/stores")
    assert stores["status"] == 200
    slug = next(s["store"]["slug"] for s in stores["body"] if s["connected"])

    started = client.api("POST", f"/api/v1/scraping/{slug}/sync")
    assert started["status"] == 202, started
    assert started["body"]["mode"] == "demo" and started["body"]["status"] == "queued"

    expect(tab.page.locator("#events li")).to_have_text(
        [f"{PROGRESS} {status}" for status in ("queued", "running", "running", "running", "running", "succeeded")]
    )
    events = client.state()["events"]
    assert {e["payload"]["job_id"] for e in events} == {started["body"]["job_id"]}
    assert all(e["event_type"] == PROGRESS and e["payload"]["store_slug"] == slug for e in events)
    progress = [e["payload"]["progress"] for e in events]
    assert progress == sorted(progress) and progress[0] == 0 and progress[-1] == 1
    tab.assert_clean()


def test_a_page_that_reconnects_with_its_last_event_id_gets_exactly_the_missed_events(
    tab: Tab, hub: HubProcess, second_origin: StaticSite
) -> None:
    client = HubClient(tab, second_origin, hub)
    user_id = client.login()
    job = str(uuid.uuid4())
    assert client.call("connect")["ok"] is True
    seen = hub.publish(PROGRESS, sync_progress(user_id, job, "queued", 0))
    client.wait_for_event(seen)

    client.call("disconnect")
    missed = [hub.publish(PROGRESS, sync_progress(user_id, job, "running", p)) for p in (0.25, 0.5, 0.75)]
    resumed = client.call("connect", {"lastEventId": seen})
    assert resumed["ok"] is True, resumed
    live = hub.publish(PROGRESS, sync_progress(user_id, job, "succeeded", 1))
    client.wait_for_event(live)  # once the live event is in, everything before it has arrived

    state = client.state()
    assert [e["id"] for e in state["events"]] == [seen, *missed, live]
    assert state["connects"] == 2 and state["disconnects"] == ["io client disconnect"]
    expect(tab.page.locator("#events li")).to_have_text(
        [f"{PROGRESS} {status}" for status in ("queued", "running", "running", "running", "succeeded")]
    )
    page = client.api("GET", f"/api/v1/me/events?after={seen}")
    assert page["status"] == 200 and page["body"]["resync"] is None
    assert page["body"]["events"] == state["events"][1:]
    tab.assert_clean()


def test_a_polling_only_page_stays_connected_across_heartbeats(
    tab: Tab, start_hub: Callable[..., HubProcess], second_origin: StaticSite
) -> None:
    own = start_hub({"CARTSNITCH_SOCKET_PING_INTERVAL_SECONDS": "1", "CARTSNITCH_SOCKET_PING_TIMEOUT_SECONDS": "1"})
    client = HubClient(tab, second_origin, own)
    user_id = client.login()
    joined = client.call("connect", {"transports": ["polling"]})
    assert joined["ok"] is True and joined["transport"] == "polling", joined
    assert joined["handshake"]["pingInterval"] == 1000 and joined["handshake"]["pingTimeout"] == 1000
    job = str(uuid.uuid4())
    first = own.publish(PROGRESS, sync_progress(user_id, job, "running", 0.5))
    client.wait_for_event(first)

    # the client drops a session whose ping is pingInterval + pingTimeout (2 s) late, the hub one whose pong is
    tab.page.wait_for_function("window.state.pings >= 3")
    second = own.publish(PROGRESS, sync_progress(user_id, job, "succeeded", 1))
    client.wait_for_event(second)
    assert client.call("socketState") == {"connected": True, "engineId": joined["engineId"], "transport": "polling"}
    state = client.state()
    assert state["disconnects"] == [] and state["connects"] == 1 and state["upgrades"] == []
    assert [e["id"] for e in state["events"]] == [first, second]
    tab.assert_clean()


def test_a_websocket_only_page_connects_without_a_console_error(
    tab: Tab, hub: HubProcess, second_origin: StaticSite
) -> None:
    client = HubClient(tab, second_origin, hub)
    user_id = client.login()
    joined = client.call("connect", {"transports": ["websocket"]})
    assert joined["ok"] is True and joined["transport"] == "websocket", joined
    assert joined["handshake"]["upgrades"] == []  # a session opened over websocket has nothing to upgrade to
    event_id = hub.publish(PROGRESS, sync_progress(user_id, str(uuid.uuid4()), "queued", 0))
    client.wait_for_event(event_id)
    state = client.state()
    assert state["upgrades"] == [] and state["disconnects"] == []
    tab.assert_clean()  # nothing allowed: not one console error


def test_a_page_opens_its_event_stream_with_a_single_use_ticket(
    tab: Tab, hub: HubProcess, second_origin: StaticSite
) -> None:
    client = HubClient(tab, second_origin, hub)
    user_id = client.login()
    issued = client.api("POST", "/api/v1/me/events/ticket")
    assert issued["status"] == 200, issued
    url = f"{hub.url}/api/v1/me/events/stream?ticket={issued['body']['ticket']}"
    assert client.call("openStream", "mine", url, [PROGRESS]) == {"opened": True, "readyState": 1}

    event_id = hub.publish(PROGRESS, sync_progress(user_id, str(uuid.uuid4()), "running", 0.5))
    client.wait_for_event(event_id)
    [received] = client.call("streamState", "mine")["events"]
    assert received["lastEventId"] == event_id and received["data"]["id"] == event_id
    assert received["data"]["payload"]["user_id"] == user_id
    expect(tab.page.locator("#events li")).to_have_text([f"{PROGRESS} running"])

    # the ticket is spent: a second EventSource with it fails for good (readyState CLOSED)
    assert client.call("openStream", "again", url, [PROGRESS]) == {"opened": False, "readyState": 2}
    assert client.call("streamState", "mine")["readyState"] == 1
    client.call("closeStream", "mine")
    # what the refusal shows in the console, and nothing else
    assert tab.problems() == [f"console: {REFUSED_401}", f"HTTP 401 {url}"]
