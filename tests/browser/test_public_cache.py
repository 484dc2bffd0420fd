"""A browser's HTTP cache against the hub's public reads: a plain ``fetch`` after a live update shows the new data,
because the hub sends ``Cache-Control: no-cache`` with an ``ETag`` and the browser revalidates its copy."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from playwright.sync_api import Request

from tests.browser.harness import HubProcess, StaticSite, Tab
from tests.browser.hub_client import HubClient


def _latest_price(trend: dict[str, Any], store_id: str) -> float:
    price: float = [p for p in trend["data_points"] if p["store_id"] == store_id][-1]["price"]
    return price


def test_a_default_fetch_of_a_public_read_is_fresh_after_a_price_update(
    tab: Tab, hub: HubProcess, second_origin: StaticSite
) -> None:
    product = hub.get_json("/api/v1/public/store-comparison")["products"][3]
    store_id = product["prices"][0]["store_id"]
    slug = next(s["slug"] for s in hub.get_json("/api/v1/stores") if s["id"] == store_id)
    path = f"/api/v1/public/trends/{product['product_id']}"
    client = HubClient(tab, second_origin, hub)
    sent: list[Request] = []
    tab.page.on("request", lambda r: sent.append(r) if r.url == hub.url + path else None)

    first = client.api("GET", path)
    assert first["status"] == 200 and first["headers"]["cache-control"] == "public, no-cache"
    before = _latest_price(first["body"], store_id)
    new_price = Decimal(str(before)) + Decimal("0.30")
    hub.publish_price(product_id=product["product_id"], store_id=store_id, store_slug=slug, regular_price=new_price)

    second = client.api("GET", path)
    assert second["status"] == 200
    assert _latest_price(second["body"], store_id) == float(new_price)
    third = client.api("GET", path)
    assert third["body"] == second["body"]

    # the browser kept each copy and asked the hub whether it was still fresh before using it
    assert len(sent) == 3
    etags = [r.response().all_headers()["etag"] for r in sent]  # type: ignore[union-attr]
    assert "if-none-match" not in sent[0].all_headers()
    assert sent[1].all_headers()["if-none-match"] == etags[0] != etags[1]
    assert sent[2].all_headers()["if-none-match"] == etags[1]
    tab.assert_clean()
