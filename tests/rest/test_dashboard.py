"""The dashboard's files: served from the package under a strict CSP, with versioned, cacheable assets."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from aiohttp.test_utils import TestClient

from tests.responses import expect_problem

Client = TestClient[Any, Any]


class PageParts(HTMLParser):
    """The page's script and style sheet URLs, and whatever would need 'unsafe-inline'."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if any(name == "style" or name.startswith("on") for name, _ in attrs) or tag == "style":
            self.inline.append(tag)
        if tag == "script":
            self._in_script = True
            if values.get("src"):
                self.urls.append(values["src"] or "")
        if tag == "link" and values.get("href"):
            self.urls.append(values["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("script")


async def test_the_dashboard_page_has_a_strict_policy_and_only_its_own_assets(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    policy = {part.split()[0]: part.split()[1:] for part in response.headers["Content-Security-Policy"].split("; ")}
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    parts = PageParts()
    parts.feed(await response.text())
    assert parts.inline == []
    assert {url.split("?")[0] for url in parts.urls} == {
        "/dashboard/app.js",
        "/dashboard/style.css",
        "/dashboard/favicon.svg",
    }
    types = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}
    for url in parts.urls:
        assert url.startswith("/dashboard/") and "?v=" in url
        asset = await client.get(url)
        assert asset.status == 200
        assert asset.headers["Content-Type"].startswith(types[url.split("?")[0].rsplit("/", 1)[1]])
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert len(await asset.read()) > 100


async def test_the_page_and_its_assets_answer_if_none_match(client: Client) -> None:
    page = await client.get("/")
    again = await client.get("/", headers={"If-None-Match": page.headers["ETag"]})
    assert again.status == 304
    assert again.headers["Content-Security-Policy"] == page.headers["Content-Security-Policy"]
    script = await client.get("/dashboard/app.js")
    assert script.status == 200
    assert script.headers["Cache-Control"] == "no-cache"  # no version given: the browser must revalidate
    cached = await client.get("/dashboard/app.js", headers={"If-None-Match": f"W/{script.headers['ETag']}"})
    assert cached.status == 304
    stale = await client.get("/dashboard/app.js?v=0000", headers={"If-None-Match": '"0000"'})
    assert stale.status == 200 and stale.headers["Cache-Control"] == "no-cache"


async def test_only_the_dashboards_files_are_served(client: Client) -> None:
    for name in ("index.html", "nope.js", "..%2Fdashboard.py", "%2e%2e%2f%2e%2e%2fpyproject.toml"):
        body = await expect_problem(await client.get(f"/dashboard/{name}"), 404)
        assert body["code"] == "NOT_FOUND"
    assert (await client.get("/dashboard/../rest/dashboard.py")).status == 404
