"""``pages/hub_client.html`` in a tab, driven from a test: a web app on another origin than the hub (fetch, the
official socket.io-client, EventSource), whose ``window.app`` functions are called here and return plain JSON."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import Page

from tests.browser.harness import HubProcess, StaticSite, Tab, require_socketio_bundle


class HubClient:
    def __init__(self, tab: Tab, site: StaticSite, hub: HubProcess) -> None:
        require_socketio_bundle()
        self.tab = tab
        self.hub = hub
        self.page: Page = tab.page
        self.page.goto(site.page_url("hub_client.html", hub=hub.url))
        self.page.wait_for_function("window.app !== undefined")

    def call(self, name: str, *args: Any) -> Any:
        """``await window.app[name](...args)``."""
        return self.page.evaluate("([name, args]) => window.app[name](...args)", [name, list(args)])

    def login(self) -> str:
        """Sign in as the demo user with ``fetch('/auth/login')``; the user's id."""
        result = self.call("login", self.hub.demo_email, self.hub.demo_password)
        assert result["status"] == 200, result
        user_id: str = result["userId"]
        return user_id

    def api(self, method: str, path: str, **options: Any) -> Any:
        """A fetch from the page: ``{status, headers, body}``, or ``{status: 0, error}`` when CORS hides it."""
        return self.call("api", method, path, options)

    def state(self) -> Any:
        """What the page recorded: ``events`` (envelopes, in arrival order), ``connects``, ``disconnects``,
        ``connectErrors``, ``handshakes`` (Engine.IO open packets), ``pings``, ``transports``, ``upgrades``."""
        return self.call("state")

    def wait_for_event(self, event_id: str) -> None:
        self.page.wait_for_function(f"window.state.events.some((e) => e.id === {json.dumps(event_id)})")


def sync_progress(user_id: str, job_id: str, status: str, progress: float) -> dict[str, Any]:
    """A ``cartsnitch.sync.progress`` payload for ``HubProcess.publish``."""
    return {"user_id": user_id, "store_slug": "kroger", "job_id": job_id, "status": status, "progress": progress}


def login(hub: HubProcess) -> tuple[str, str]:
    """The demo user's (access token, id), signed in from the test rather than a page."""
    response = hub.request("POST", "/auth/login", json_body={"email": hub.demo_email, "password": hub.demo_password})
    assert response.status == 200, response.body[:300]
    token: str = response.json()["access_token"]
    me = hub.request("GET", "/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status == 200, me.body[:300]
    user_id: str = me.json()["id"]
    return token, user_id
