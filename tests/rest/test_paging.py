from __future__ import annotations

import statistics
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import insert, text

from hub import keys
from hub.store.models import Purchase
from tests import factories

Client = TestClient[Any, Any]
API = "/api/v1"
ROWS = 10_000
PAGE_SIZE = 100


def _next_link(response: Any) -> str | None:
    link = response.headers.get("Link")
    if link is None:
        return None
    assert link.endswith('>; rel="next"')
    return str(link[1 : link.index(">")])


async def _median_ms(client: Client, path: str, headers: dict[str, str], runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        response = await client.get(path, headers=headers)
        await response.read()
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status == 200
    return statistics.median(timings)


async def test_cursor_walk_visits_every_purchase_once_in_order(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        store = await factories.create_store(session)
    start = date(2020, 1, 1)
    # several purchases a day, so the id tie-break decides much of the order
    rows = [
        {
            "id": uuid.uuid4(),
            "user_id": user.id,
            "store_id": store.id,
            "receipt_id": f"r{n}",
            "purchase_date": start + timedelta(days=n // 7),
            "total": Decimal(n % 5000) / 100,
        }
        for n in range(ROWS)
    ]
    async with client.app[keys.sessionmaker].begin() as session:
        await session.execute(insert(Purchase.__table__), rows)
    backend = client.app[keys.engine].dialect.name
    if backend == "postgresql":
        # what autovacuum would do soon after a bulk load: without statistics the planner guesses a handful of rows
        async with client.app[keys.engine].connect() as connection:
            await connection.execute(text("ANALYZE purchases"))
            await connection.commit()
    expected = [str(row["id"]) for row in sorted(rows, key=lambda r: (r["purchase_date"], r["id"]), reverse=True)]

    headers = await factories.auth_headers(client.app, user.id)
    first_page = f"{API}/purchases?page_size={PAGE_SIZE}"
    path: str | None = first_page
    seen: list[str] = []
    deep_page = None
    while path is not None:
        if len(seen) == 9_000:
            deep_page = path
        response = await client.get(path, headers=headers)
        assert response.status == 200
        seen += [item["id"] for item in await response.json()]
        path = _next_link(response)
    assert len(seen) == ROWS
    assert len(set(seen)) == ROWS
    assert seen == expected

    assert deep_page is not None and "cursor=" in deep_page
    first_ms = await _median_ms(client, first_page, headers)
    deep_ms = await _median_ms(client, deep_page, headers)
    offset_ms = await _median_ms(client, f"{API}/purchases?page_size={PAGE_SIZE}&page=91", headers)
    print(
        f"\n[paging {backend}] {ROWS} purchases, page_size={PAGE_SIZE}, median of 5 requests: "
        f"first page {first_ms:.1f} ms, page after 9000 rows via cursor {deep_ms:.1f} ms "
        f"(same page via page=91 offset {offset_ms:.1f} ms)"
    )


async def test_a_cursor_is_refused_by_every_list_but_the_one_that_issued_it(client: Client) -> None:
    """A cursor is opaque and bound to its list: another list's, even with a sort key of the same shape (a date and
    an id), is a 422 rather than a page at some arbitrary position."""
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        store = await factories.create_store(session)
        for n in range(3):
            await factories.create_purchase(session, user=user, store=store, purchased=date(2024, 1, 1 + n))
    headers = await factories.auth_headers(client.app, user.id)
    first = await client.get(f"{API}/purchases?page_size=1", headers=headers)
    link = _next_link(first)
    assert link is not None
    assert (await client.get(link, headers=headers)).status == 200
    cursor = link.split("cursor=", 1)[1]
    for other in ("/api/v1/coupons", "/api/v1/shopping/lists", "/api/v1/products", "/pwa/api/v1/purchases"):
        response = await client.get(f"{other}?cursor={cursor}", headers=headers)
        assert response.status == 422, other
        assert (await response.json())["errors"][0]["field"] == "cursor"
