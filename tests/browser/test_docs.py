"""The API docs in a browser on a machine without internet access: Swagger UI and ReDoc load every file from the
hub, under its Content-Security-Policy, and render the hub's OpenAPI document."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import expect

from tests.browser.harness import HubProcess, Tab


def test_swagger_ui_and_redoc_render_offline_from_the_hub_alone(tab: Tab, hub: HubProcess) -> None:
    page = tab.page
    title = hub.get_json("/openapi.json")["info"]["title"]

    page.goto(hub.url + "/docs")
    login = page.locator('.opblock-summary-path[data-path="/auth/login"]')
    expect(login).to_be_visible()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text(title)
    login.click()
    expect(page.locator(".opblock.is-open .opblock-summary-path")).to_have_attribute("data-path", "/auth/login")
    expect(page.locator(".opblock.is-open .opblock-body")).to_contain_text("application/json")

    page.goto(hub.url + "/redoc")
    expect(page.locator("h1")).to_contain_text(title)
    expect(page.get_by_text("/auth/login").first).to_be_attached()

    assert tab.hosts() == {urlsplit(hub.url).netloc}, tab.requests
    tab.assert_clean()
