"""The plumbing of the browser suite: a page on a second origin loads the official socket.io-client, joins the
hub's public namespace, subscribes to a trend room and receives a live price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from tests.browser.harness import HubProcess, StaticSite, Tab, require_socketio_bundle


def test_a_page_on_another_origin_subscribes_to_a_trend_room_and_sees_a_price_move(
    tab: Tab, hub: HubProcess, second_origin: StaticSite
) -> None:
    require_socketio_bundle()
    product = hub.get_json("/api/v1/public/store-comparison")["products"][0]
    room = f"trend:{product['product_id']}"
    tab.page.goto(second_origin.page_url("public_room.html", hub=hub.url, room=room))
    tab.page.wait_for_function("window.results.ack !== null")
    ack: dict[str, Any] = tab.page.evaluate("window.results.ack")
    assert ack["ok"] is True and ack["room"] == room
    assert ack["snapshot"] == hub.get_json(f"/api/v1/public/trends/{product['product_id']}")
    tab.page.wait_for_function("window.results.transport === 'websocket'")

    store = product["prices"][0]
    slug = next(s["slug"] for s in hub.get_json("/api/v1/stores") if s["id"] == store["store_id"])
    hub.publish_price(
        product_id=product["product_id"], store_id=store["store_id"], store_slug=slug, regular_price=Decimal("0.79")
    )
    tab.page.wait_for_function("window.results.events.length > 0")
    [envelope] = tab.page.evaluate("window.results.events")
    assert envelope["event_type"] == "cartsnitch.prices.updated"
    assert envelope["payload"]["regular_price"] == 0.79 and envelope["payload"]["store_id"] == store["store_id"]
    assert envelope["id"]
    today = [p for p in envelope["payload"]["snapshot"]["data_points"] if p["store_id"] == store["store_id"]][-1]
    assert today["price"] == 0.79  # the room's snapshot comes with the event, the new price in it
    assert tab.hosts() == {urlsplit(second_origin.url).netloc, urlsplit(hub.url).netloc}
    tab.assert_clean()
