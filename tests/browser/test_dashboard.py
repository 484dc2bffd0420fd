"""The public dashboard at ``/`` in a real browser: search a product, watch its chart move when a price is
published, on a desktop and on a phone, with nothing loaded from anywhere but the hub."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from playwright.sync_api import Page, expect

from tests.browser.harness import HubProcess, Tab

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


def _store_days(trend: dict[str, Any]) -> int:
    """How many points the chart draws: one per store and day (the day's last observation)."""
    return len({(p["store_id"], p["date"]) for p in trend["data_points"]})


def _shelf(price: Decimal) -> Decimal:
    """A price ending in 9 cents, at or below ``price``."""
    return max(Decimal("0.19"), (price * 10).quantize(Decimal(1), rounding=ROUND_DOWN) / 10 - Decimal("0.01"))


def _chart(page: Page) -> Any:
    return page.locator("#trend-chart")


def test_the_dashboard_follows_a_searched_product_live_on_desktop_and_phone(
    tab: Tab, new_tab: Callable[..., Tab], hub: HubProcess, artifacts: Path
) -> None:
    page = tab.page
    page.goto(hub.url + "/")
    expect(page.locator("#status")).to_have_text("live")
    opening = hub.get_json("/api/v1/public/store-comparison")
    expect(_chart(page)).to_have_attribute("data-product", opening["products"][0]["product_id"])
    expect(page.locator("#comparison-bars > li")).to_have_count(len(opening["stores"]))
    inflation = hub.get_json("/api/v1/public/inflation")
    expect(page.locator("#inflation-source")).to_contain_text("U.S. Bureau of Labor Statistics")
    expect(page.locator("#inflation-source")).to_contain_text(inflation["cpi"]["series_id"])

    wanted = opening["products"][1]  # priced at every store, and not the opening product
    page.locator("#search").fill(wanted["product_name"][:-1].lower())
    matches = hub.get_json(
        "/api/v1/public/products?" + urlencode({"q": wanted["product_name"][:-1].lower(), "limit": 8})
    )
    position = [m["id"] for m in matches].index(wanted["product_id"])
    expect(page.locator("#results [role=option]")).to_have_count(len(matches))
    for _ in range(position + 1):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    product = matches[position]
    expect(_chart(page)).to_have_attribute("data-product", product["id"])
    expect(page.locator("#trend-title")).to_have_text(product["name"])
    assert page.evaluate("location.hash") == f"#product={product['id']}"
    trend = hub.get_json(f"/api/v1/public/trends/{product['id']}")
    expect(_chart(page)).to_have_attribute("data-points", str(_store_days(trend)))

    phone = new_tab(**PHONE)
    phone.page.goto(f"{hub.url}/#product={product['id']}")
    expect(_chart(phone.page)).to_have_attribute("data-points", str(_store_days(trend)))
    expect(phone.page.locator("#status")).to_have_text("live")

    slugs = {store["id"]: store["slug"] for store in hub.get_json("/api/v1/stores")}
    latest_first = list(dict.fromkeys(point["store_id"] for point in reversed(trend["data_points"])))
    lines = {store: f'#trend-chart path[data-store="{store}"]' for store in latest_first}
    befores = {store: page.locator(line).get_attribute("d") for store, line in lines.items()}
    new_price = _shelf(min(Decimal(str(p["price"])) for p in trend["data_points"]) * Decimal("0.8"))
    # today's price at a store where today's observation is not one of the demo receipts' lines
    for store_id in latest_first:
        published = hub.try_publish_price(
            product_id=product["id"], store_id=store_id, store_slug=slugs[store_id], regular_price=new_price
        )
        if published is not None:
            break
    else:
        raise AssertionError("every store's observation of today is a receipt line")
    line, before = lines[store_id], befores[store_id]

    after_trend = hub.get_json(f"/api/v1/public/trends/{product['id']}")
    for device in (tab, phone):
        chart = _chart(device.page)
        expect(chart).to_have_attribute("data-updates", "1")
        expect(chart).to_have_attribute("data-points", str(_store_days(after_trend)))
        expect(device.page.locator(line)).not_to_have_attribute("d", before or "")
        cheapest = device.page.locator("#trend-legend > li").first
        expect(cheapest).to_have_attribute("data-store", store_id)
        expect(cheapest).to_have_attribute("data-price", str(float(new_price)))
        expect(device.page.locator("#feed > li").first).to_contain_text(f"${new_price}")

    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390
    boxes = [phone.page.locator(f"section.{name}").bounding_box() for name in ("trend", "comparison", "inflation")]
    assert all(box is not None and box["width"] <= 390 for box in boxes)
    assert [box["y"] for box in boxes if box] == sorted(box["y"] for box in boxes if box)

    page.screenshot(path=artifacts / "dashboard-desktop.png", full_page=True)
    phone.page.screenshot(path=artifacts / "dashboard-phone.png", full_page=True)
    for device in (tab, phone):
        assert device.hosts() == {urlsplit(hub.url).netloc}
        device.assert_clean()


def test_a_link_to_an_unknown_product_falls_back_to_the_opening_product(tab: Tab, hub: HubProcess) -> None:
    unknown = str(uuid.uuid4())
    tab.page.goto(f"{hub.url}/#product={unknown}")
    opening = hub.get_json("/api/v1/public/store-comparison")["products"][0]
    expect(_chart(tab.page)).to_have_attribute("data-product", opening["product_id"])
    expect(tab.page.locator("#trend-title")).to_have_text(opening["product_name"])
    expect(tab.page.locator("#status")).to_have_text("live")
    assert tab.page.evaluate("location.hash") == f"#product={opening['product_id']}"
    refused = [r for r in tab.error_responses if unknown in r]
    assert refused and all(r.startswith("404 ") for r in refused)
    tab.assert_clean(allow=(unknown, "status of 404"))


def test_the_demo_ticker_keeps_the_dashboard_moving_across_a_hub_restart(
    tab: Tab, start_hub: Callable[..., HubProcess]
) -> None:
    demo = start_hub({"CARTSNITCH_DEMO_TICKER_SECONDS": "0.5"})
    assert demo.output[-1] == f"dashboard: {demo.url}/  (a simulated price change every 0.5 s)"
    page = tab.page
    page.goto(demo.url + "/")
    expect(page.locator("#status")).to_have_text("live")
    expect(_chart(page)).not_to_have_attribute("data-updates", "0")
    expect(page.locator("#feed > li").first.locator(".badge.demo")).to_have_text("demo")

    demo.restart()
    expect(page.locator("#status")).to_have_text("live", timeout=30_000)
    seen = _chart(page).get_attribute("data-updates")
    expect(_chart(page)).not_to_have_attribute("data-updates", seen or "")  # it moves on after the restart
    assert tab.hosts() == {urlsplit(demo.url).netloc}
    # the streams ended cleanly at shutdown; only the reconnections tried while the hub was down were refused
    tab.assert_clean(allow=("net::ERR_CONNECTION_REFUSED",))
