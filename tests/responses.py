"""Assertions on REST responses, shared by the route tests."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from aiohttp.test_utils import TestClient


async def expect_json(response: Any, status: int = 200) -> Any:
    """The JSON body of a response that must have ``status`` and a JSON content type."""
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"].startswith("application/json")
    return await response.json()


async def expect_problem(response: Any, status: int) -> dict[str, Any]:
    """The problem+json body of a response that must have ``status``."""
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = await response.json()
    assert body["status"] == status
    return body


def check_problem(response: Any, body: dict[str, Any], status: int, slug: str) -> None:
    """A problem of type ``…/<slug>`` with ``status``, and no trace in it."""
    assert response.status == status
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == status
    assert body["type"].endswith("/" + slug)
    assert "Traceback" not in json.dumps(body)


async def all_pages(client: TestClient[Any, Any], url: str, headers: dict[str, str]) -> list[list[Any]]:
    """Every page of a list, following ``Link: rel="next"`` from ``url``."""
    pages = []
    while True:
        response = await client.get(url, headers=headers)
        pages.append(await expect_json(response))
        link = response.headers.get("Link")
        if link is None:
            return pages
        url = link[1 : link.index(">")]


def midnight(day: date) -> str:
    """How the old gateway wrote a date-backed timestamp, and /api/v1 still does: local midnight, no offset."""
    return f"{day.isoformat()}T00:00:00"
