from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient

from hub import keys
from hub.store import alerts
from hub.store.models import NormalizedProduct, ShrinkflationEvent, Store, User
from tests import factories
from tests.responses import check_problem, midnight

Client = TestClient[Any, Any]
API = "/api/v1"
TODAY = datetime.now(UTC).date()
TODAY_IN_UTC = True


@dataclass
class World:
    ann: User
    bob: User
    kroger: Store
    meijer: Store
    cheerios: NormalizedProduct
    milk: NormalizedProduct
    soda: NormalizedProduct
    shrink: ShrinkflationEvent
    ann_headers: dict[str, str]
    bob_headers: dict[str, str]


def _day(days_ago: int) -> date:
    return TODAY - timedelta(days=days_ago)


def _inc_id(product: NormalizedProduct, store: Store, observed: date) -> str:
    return f"inc:{product.id}:{store.id}:{observed.isoformat()}"


async def _world(client: Client) -> World:
    """Ann bought Cheerios and milk, Bob bought soda. Cheerios rose 12.5% at Kroger 5 days ago and 3.3% at Meijer;
    milk rose outside the 90-day window; soda doubled; Cheerios shrank 3 days ago."""
    async with client.app[keys.sessionmaker].begin() as session:
        ann = await factories.create_user(session)
        bob = await factories.create_user(session)
        kroger = await factories.create_store(session, name="Kroger", slug=f"kr{uuid.uuid4().hex[:8]}")
        meijer = await factories.create_store(session, name="Meijer", slug=f"me{uuid.uuid4().hex[:8]}")
        cheerios = await factories.create_product(session, canonical_name="Cheerios 18 oz")
        milk = await factories.create_product(session, canonical_name="Whole Milk")
        soda = await factories.create_product(session, canonical_name="Cola 12 pk")
        await factories.create_purchase(
            session, user=ann, store=kroger, purchased=_day(30), items=[(cheerios, "1", "3.99"), (milk, "1", "2.00")]
        )
        await factories.create_purchase(
            session, user=bob, store=kroger, purchased=_day(30), items=[(soda, "1", "1.00")]
        )
        await factories.create_price(session, product=cheerios, store=kroger, observed=_day(20), regular="3.99")
        await factories.create_price(
            session, product=cheerios, store=kroger, observed=_day(5), regular="4.79", sale="4.49"
        )
        await factories.create_price(session, product=cheerios, store=meijer, observed=_day(30), regular="3.00")
        await factories.create_price(session, product=cheerios, store=meijer, observed=_day(10), regular="3.10")
        await factories.create_price(session, product=milk, store=kroger, observed=_day(200), regular="2.00")
        await factories.create_price(session, product=milk, store=kroger, observed=_day(100), regular="2.50")
        await factories.create_price(session, product=soda, store=kroger, observed=_day(40), regular="1.00")
        await factories.create_price(session, product=soda, store=kroger, observed=_day(2), regular="2.00")
        shrink = await factories.create_shrinkflation(
            session,
            product=cheerios,
            detected_date=_day(3),
            old_size="18",
            new_size="16",
            old_unit="oz",
            new_unit="oz",
            price_at_old_size=Decimal("3.99"),
            price_at_new_size=Decimal("4.49"),
        )
    return World(
        ann,
        bob,
        kroger,
        meijer,
        cheerios,
        milk,
        soda,
        shrink,
        await factories.auth_headers(client.app, ann.id),
        await factories.auth_headers(client.app, bob.id),
    )


async def _trigger(
    client: Client, product: NormalizedProduct, store: Store, price: str, now: datetime | None = None
) -> list[alerts.TriggeredTarget]:
    async with client.app[keys.sessionmaker].begin() as session:
        return await alerts.trigger_price_targets(
            session, product_id=product.id, store_id=store.id, price=Decimal(price), now=now or datetime.now(UTC)
        )


async def _feed(client: Client, headers: dict[str, str], query: str = "") -> list[dict[str, Any]]:
    response = await client.get(f"{API}/alerts{query}", headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body: list[dict[str, Any]] = await response.json()
    return body


async def test_alert_routes_require_auth(client: Client) -> None:
    some = uuid.uuid4()
    settings = {"price_increase_threshold_pct": 5, "shrinkflation_enabled": True, "email_notifications": False}
    for method, path, body in (
        ("GET", "/alerts", None),
        ("PUT", f"/alerts/shr:{some}/read", {"read": True}),
        ("GET", "/alerts/settings", None),
        ("PUT", "/alerts/settings", settings),
        ("GET", "/alerts/targets", None),
        ("POST", "/alerts/targets", {"product_id": str(some), "target_price": 1}),
        ("GET", f"/alerts/targets/{some}", None),
        ("DELETE", f"/alerts/targets/{some}", None),
    ):
        response = await client.request(method, API + path, json=body)
        check_problem(response, await response.json(), 401, "unauthorized")


# --- the feed ---------------------------------------------------------------------------------------------------


async def test_list_alerts_merges_increases_shrinkflation_and_targets_newest_first(client: Client) -> None:
    w = await _world(client)
    created = await client.post(
        f"{API}/alerts/targets", headers=w.ann_headers, json={"product_id": str(w.milk.id), "target_price": 2.25}
    )
    assert created.status == 201
    target = await created.json()
    fired = await _trigger(client, w.milk, w.meijer, "2.19")
    assert [t.alert_id for t in fired] == [uuid.UUID(target["id"])]

    feed = await _feed(client, w.ann_headers)

    assert [a["id"] for a in feed] == [
        f"tgt:{target['id']}",
        f"shr:{w.shrink.id}",
        _inc_id(w.cheerios, w.kroger, _day(5)),
    ]
    assert [a["alert_type"] for a in feed] == ["price_target", "shrinkflation", "price_increase"]
    increase = feed[2]
    assert increase["product_id"] == str(w.cheerios.id)
    assert increase["product_name"] == "Cheerios 18 oz"
    assert increase["message"] == "Cheerios 18 oz went from $3.99 to $4.49 at Kroger (+12.5%)"
    # date-backed alerts read as the old gateway wrote its shrinkflation alerts: local midnight of their day
    assert increase["triggered_at"] == midnight(_day(5))
    assert increase["read"] is False
    assert feed[1]["message"].startswith("Cheerios 18 oz shrank from 18 oz to 16 oz")
    assert feed[1]["triggered_at"] == midnight(_day(3))
    assert feed[0]["product_name"] == "Whole Milk"
    fired_at = datetime.fromisoformat(feed[0]["triggered_at"])
    assert fired_at.utcoffset() is not None and datetime.now(UTC) - fired_at < timedelta(minutes=1)
    assert "$2.19" in feed[0]["message"] and "Meijer" in feed[0]["message"] and "$2.25" in feed[0]["message"]
    assert set(feed[0]) == {"id", "alert_type", "product_id", "product_name", "message", "triggered_at", "read"}


async def test_alerts_follow_what_each_user_bought(client: Client) -> None:
    w = await _world(client)
    bobs = await _feed(client, w.bob_headers)
    assert [a["id"] for a in bobs] == [_inc_id(w.soda, w.kroger, _day(2))]
    assert bobs[0]["message"] == "Cola 12 pk went from $1.00 to $2.00 at Kroger (+100.0%)"
    anns = {a["id"] for a in await _feed(client, w.ann_headers)}
    assert _inc_id(w.soda, w.kroger, _day(2)) not in anns


async def test_alert_settings_shape_the_feed(client: Client) -> None:
    w = await _world(client)
    response = await client.put(
        f"{API}/alerts/settings",
        headers=w.ann_headers,
        json={"price_increase_threshold_pct": 3, "shrinkflation_enabled": False, "email_notifications": True},
    )
    assert response.status == 200

    feed = await _feed(client, w.ann_headers)

    assert [a["id"] for a in feed] == [_inc_id(w.cheerios, w.kroger, _day(5)), _inc_id(w.cheerios, w.meijer, _day(10))]
    assert feed[1]["message"] == "Cheerios 18 oz went from $3.00 to $3.10 at Meijer (+3.3%)"

    async with client.app[keys.sessionmaker].begin() as session:
        await factories.create_price(session, product=w.milk, store=w.meijer, observed=_day(9), regular="2.20")
        await factories.create_price(session, product=w.milk, store=w.meijer, observed=_day(8), regular="2.31")
    response = await client.put(
        f"{API}/alerts/settings",
        headers=w.ann_headers,
        json={"price_increase_threshold_pct": 5, "shrinkflation_enabled": True, "email_notifications": False},
    )
    assert response.status == 200
    ids = [a["id"] for a in await _feed(client, w.ann_headers)]
    assert _inc_id(w.milk, w.meijer, _day(8)) in ids
    response = await client.put(
        f"{API}/alerts/settings",
        headers=w.ann_headers,
        json={"price_increase_threshold_pct": 5.01, "shrinkflation_enabled": True, "email_notifications": False},
    )
    assert response.status == 200
    assert _inc_id(w.milk, w.meijer, _day(8)) not in [a["id"] for a in await _feed(client, w.ann_headers)]


async def test_list_alerts_pages_by_cursor(client: Client) -> None:
    w = await _world(client)
    await client.put(
        f"{API}/alerts/settings",
        headers=w.ann_headers,
        json={"price_increase_threshold_pct": 1, "shrinkflation_enabled": True, "email_notifications": False},
    )
    everything = [a["id"] for a in await _feed(client, w.ann_headers)]
    assert len(everything) == 3

    seen: list[str] = []
    url: str | None = f"{API}/alerts?page_size=2"
    while url is not None:
        response = await client.get(url, headers=w.ann_headers)
        assert response.status == 200
        seen += [a["id"] for a in await response.json()]
        link = response.headers.get("Link")
        url = link[link.index("<") + 1 : link.index(">")] if link else None
        assert link is None or 'rel="next"' in link
    assert seen == everything

    second = await client.get(f"{API}/alerts?page_size=2&page=2", headers=w.ann_headers)
    assert [a["id"] for a in await second.json()] == everything[2:]

    for query in ("?unread=maybe", "?page_size=0", "?cursor=not-a-cursor"):
        response = await client.get(f"{API}/alerts{query}", headers=w.ann_headers)
        body = await response.json()
        check_problem(response, body, 422, "validation")
        assert body["errors"][0]["field"] in ("unread", "page_size", "cursor")


async def test_mark_alert_read_then_filter_by_unread(client: Client) -> None:
    w = await _world(client)
    alert_id = f"shr:{w.shrink.id}"

    response = await client.put(f"{API}/alerts/{alert_id}/read", headers=w.ann_headers, json={"read": True})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert body["id"] == alert_id and body["read"] is True and body["alert_type"] == "shrinkflation"
    again = await client.put(f"{API}/alerts/{alert_id}/read", headers=w.ann_headers, json={"read": True})
    assert again.status == 200

    assert [a["id"] for a in await _feed(client, w.ann_headers, "?unread=true")] == [
        _inc_id(w.cheerios, w.kroger, _day(5))
    ]
    read = await _feed(client, w.ann_headers, "?unread=false")
    assert [(a["id"], a["read"]) for a in read] == [(alert_id, True)]

    response = await client.put(f"{API}/alerts/{alert_id}/read", headers=w.ann_headers, json={"read": False})
    assert response.status == 200
    assert (await response.json())["read"] is False
    assert len(await _feed(client, w.ann_headers, "?unread=true")) == 2


async def test_mark_alert_read_of_an_alert_outside_the_feed_is_404(client: Client) -> None:
    w = await _world(client)
    outside = [
        "junk",
        "inc:nope",
        f"shr:{uuid.uuid4()}",
        f"tgt:{uuid.uuid4()}",
        _inc_id(w.soda, w.kroger, _day(2)),  # Bob's, Ann never bought soda
        _inc_id(w.cheerios, w.kroger, _day(20)),  # not the latest observation
        _inc_id(w.cheerios, w.meijer, _day(10)),  # below Ann's threshold
    ]
    for alert_id in outside:
        response = await client.put(f"{API}/alerts/{alert_id}/read", headers=w.ann_headers, json={"read": True})
        check_problem(response, await response.json(), 404, "not-found")
    response = await client.put(
        f"{API}/alerts/{_inc_id(w.soda, w.kroger, _day(2))}/read", headers=w.bob_headers, json={"read": True}
    )
    assert response.status == 200

    response = await client.put(f"{API}/alerts/shr:{w.shrink.id}/read", headers=w.ann_headers, json={"read": "yes"})
    body = await response.json()
    check_problem(response, body, 422, "validation")
    assert body["errors"][0]["field"] == "read"


# --- settings ---------------------------------------------------------------------------------------------------


async def test_alert_settings_default_then_upsert(client: Client) -> None:
    w = await _world(client)
    response = await client.get(f"{API}/alerts/settings", headers=w.ann_headers)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert await response.json() == {
        "price_increase_threshold_pct": 5.0,
        "shrinkflation_enabled": True,
        "email_notifications": False,
    }

    for threshold, email in ((7.5, True), (12.25, False)):
        wanted = {
            "price_increase_threshold_pct": threshold,
            "shrinkflation_enabled": False,
            "email_notifications": email,
        }
        response = await client.put(f"{API}/alerts/settings", headers=w.ann_headers, json=wanted)
        assert response.status == 200
        assert await response.json() == wanted
        response = await client.get(f"{API}/alerts/settings", headers=w.ann_headers)
        assert await response.json() == wanted

    bobs = await client.get(f"{API}/alerts/settings", headers=w.bob_headers)
    assert (await bobs.json())["price_increase_threshold_pct"] == 5.0

    good = {"price_increase_threshold_pct": 5, "shrinkflation_enabled": True, "email_notifications": False}
    for bad, field in (
        ({**good, "price_increase_threshold_pct": 0}, "price_increase_threshold_pct"),
        ({**good, "price_increase_threshold_pct": 100.5}, "price_increase_threshold_pct"),
        ({k: v for k, v in good.items() if k != "email_notifications"}, "email_notifications"),
        ({**good, "shrinkflation_enabled": "no"}, "shrinkflation_enabled"),
    ):
        response = await client.put(f"{API}/alerts/settings", headers=w.ann_headers, json=bad)
        body = await response.json()
        check_problem(response, body, 422, "validation")
        assert body["errors"][0]["field"] == field


# --- target-price alerts ----------------------------------------------------------------------------------------


async def test_create_list_delete_target_alert(client: Client) -> None:
    w = await _world(client)
    response = await client.post(
        f"{API}/alerts/targets", headers=w.ann_headers, json={"product_id": str(w.cheerios.id), "target_price": 3.05}
    )
    assert response.status == 201
    assert response.headers["Content-Type"].startswith("application/json")
    created = await response.json()
    assert response.headers["Location"] == f"{API}/alerts/targets/{created['id']}"
    assert created["product_id"] == str(w.cheerios.id)
    assert created["product_name"] == "Cheerios 18 oz"
    assert created["target_price"] == 3.05
    assert created["current_price"] == 3.10  # Meijer's latest beats Kroger's 4.49 sale price
    assert created["triggered"] is False and created["triggered_at"] is None
    located = await client.get(response.headers["Location"], headers=w.ann_headers)
    assert located.status == 200 and await located.json() == created
    foreign = await client.get(response.headers["Location"], headers=w.bob_headers)
    check_problem(foreign, await foreign.json(), 404, "not-found")

    unseen = await client.post(
        f"{API}/alerts/targets", headers=w.ann_headers, json={"product_id": str(w.soda.id), "target_price": 1}
    )
    assert unseen.status == 201
    async with client.app[keys.sessionmaker].begin() as session:
        never_priced = await factories.create_product(session, canonical_name="Rare Tea")
    response = await client.post(
        f"{API}/alerts/targets", headers=w.ann_headers, json={"product_id": str(never_priced.id), "target_price": 1}
    )
    assert (await response.json())["current_price"] is None

    response = await client.get(f"{API}/alerts/targets", headers=w.ann_headers)
    assert response.status == 200
    listed = await response.json()
    assert [t["product_name"] for t in listed] == ["Rare Tea", "Cola 12 pk", "Cheerios 18 oz"]
    assert listed[2] == created

    response = await client.delete(f"{API}/alerts/targets/{created['id']}", headers=w.ann_headers)
    assert response.status == 204
    response = await client.delete(f"{API}/alerts/targets/{created['id']}", headers=w.ann_headers)
    check_problem(response, await response.json(), 404, "not-found")
    listed = await (await client.get(f"{API}/alerts/targets", headers=w.ann_headers)).json()
    assert created["id"] not in [t["id"] for t in listed]

    first = await client.get(f"{API}/alerts/targets?page_size=1", headers=w.ann_headers)
    link = first.headers["Link"]
    second = await client.get(link[link.index("<") + 1 : link.index(">")], headers=w.ann_headers)
    assert [t["product_name"] for t in [*await first.json(), *await second.json()]] == ["Rare Tea", "Cola 12 pk"]
    assert "Link" not in second.headers


async def test_create_target_alert_conflicts_and_errors(client: Client) -> None:
    w = await _world(client)
    body = {"product_id": str(w.cheerios.id), "target_price": 3.0}
    assert (await client.post(f"{API}/alerts/targets", headers=w.ann_headers, json=body)).status == 201
    response = await client.post(f"{API}/alerts/targets", headers=w.ann_headers, json=body)
    check_problem(response, await response.json(), 409, "conflict")
    response = await client.post(f"{API}/alerts/targets", headers=w.bob_headers, json=body)
    assert response.status == 201  # one pending target per user and product
    response = await client.post(
        f"{API}/alerts/targets", headers=w.bob_headers, json={"product_id": str(w.milk.id), "target_price": 1.235}
    )
    assert response.status == 201
    assert (await response.json())["target_price"] == 1.24  # rounded half up to the cent

    response = await client.post(
        f"{API}/alerts/targets", headers=w.ann_headers, json={"product_id": str(uuid.uuid4()), "target_price": 1}
    )
    check_problem(response, await response.json(), 404, "not-found")
    for bad, field in (
        ({"product_id": str(w.cheerios.id), "target_price": 0}, "target_price"),
        ({"product_id": "nope", "target_price": 1}, "product_id"),
        ({"product_id": str(w.cheerios.id), "target_price": "3.50"}, "target_price"),
    ):
        response = await client.post(f"{API}/alerts/targets", headers=w.ann_headers, json=bad)
        problem = await response.json()
        check_problem(response, problem, 422, "validation")
        assert problem["errors"][0]["field"] == field
    response = await client.post(f"{API}/alerts/targets", json=body)
    check_problem(response, await response.json(), 401, "unauthorized")


async def test_target_alerts_of_another_user_are_invisible(client: Client) -> None:
    w = await _world(client)
    response = await client.post(
        f"{API}/alerts/targets", headers=w.bob_headers, json={"product_id": str(w.soda.id), "target_price": 1.5}
    )
    bobs = await response.json()
    assert await (await client.get(f"{API}/alerts/targets", headers=w.ann_headers)).json() == []
    response = await client.delete(f"{API}/alerts/targets/{bobs['id']}", headers=w.ann_headers)
    check_problem(response, await response.json(), 404, "not-found")
    response = await client.delete(f"{API}/alerts/targets/not-a-uuid", headers=w.ann_headers)
    check_problem(response, await response.json(), 404, "not-found")
    await _trigger(client, w.soda, w.kroger, "1.25")
    assert [a["alert_type"] for a in await _feed(client, w.ann_headers)] == ["shrinkflation", "price_increase"]
    response = await client.put(f"{API}/alerts/tgt:{bobs['id']}/read", headers=w.ann_headers, json={"read": True})
    check_problem(response, await response.json(), 404, "not-found")
    response = await client.get(f"{API}/alerts/targets")
    check_problem(response, await response.json(), 401, "unauthorized")
    response = await client.delete(f"{API}/alerts/targets/{bobs['id']}")
    check_problem(response, await response.json(), 401, "unauthorized")


async def test_trigger_price_targets_fires_each_target_once(client: Client) -> None:
    w = await _world(client)
    targets = {}
    for headers, price in ((w.ann_headers, "3.05"), (w.bob_headers, "3.00")):
        response = await client.post(
            f"{API}/alerts/targets",
            headers=headers,
            json={"product_id": str(w.cheerios.id), "target_price": float(price)},
        )
        targets[price] = (await response.json())["id"]

    assert await _trigger(client, w.cheerios, w.kroger, "3.06") == []
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    fired = await _trigger(client, w.cheerios, w.kroger, "3.05", now)
    assert fired == [
        alerts.TriggeredTarget(
            alert_id=uuid.UUID(targets["3.05"]),
            user_id=w.ann.id,
            product_id=w.cheerios.id,
            product_name="Cheerios 18 oz",
            store_slug=w.kroger.slug,
            target_price=Decimal("3.05"),
            current_price=Decimal("3.05"),
        )
    ]
    assert await _trigger(client, w.cheerios, w.kroger, "3.04") == []
    fired = await _trigger(client, w.cheerios, w.meijer, "2.99")
    assert [(t.alert_id, t.user_id, t.store_slug) for t in fired] == [
        (uuid.UUID(targets["3.00"]), w.bob.id, w.meijer.slug)
    ]
    assert await _trigger(client, w.cheerios, w.meijer, "1.00") == []

    listed = await (await client.get(f"{API}/alerts/targets", headers=w.ann_headers)).json()
    assert listed[0]["triggered"] is True
    assert listed[0]["triggered_at"].startswith("2030-01-02T03:04:05")
    response = await client.post(
        f"{API}/alerts/targets", headers=w.ann_headers, json={"product_id": str(w.cheerios.id), "target_price": 3.0}
    )
    assert response.status == 201  # the earlier target has fired, so a new one may wait


async def test_a_shrinkflation_alert_cannot_be_marked_while_shrinkflation_alerts_are_off(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        store = await factories.create_store(session)
        product = await factories.create_product(session)
        await factories.create_purchase(
            session, user=user, store=store, purchased=date.today(), items=[(product, "1", "2.00")]
        )
        event = await factories.create_shrinkflation(session, product=product)
    headers = await factories.auth_headers(client.app, user.id)
    settings = {"price_increase_threshold_pct": 5, "shrinkflation_enabled": False, "email_notifications": False}
    assert (await client.put(f"{API}/alerts/settings", json=settings, headers=headers)).status == 200
    response = await client.put(f"{API}/alerts/shr:{event.id}/read", json={"read": True}, headers=headers)
    assert response.status == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")


async def test_the_same_target_created_twice_at_once_is_one_target_and_one_conflict(client: Client) -> None:
    w = await _world(client)
    body = {"product_id": str(w.cheerios.id), "target_price": 3.05}
    raced = await asyncio.gather(
        *(client.post(f"{API}/alerts/targets", headers=w.ann_headers, json=body) for _ in range(4))
    )
    assert sorted(response.status for response in raced) == [201, 409, 409, 409]
    listed = await (await client.get(f"{API}/alerts/targets", headers=w.ann_headers)).json()
    assert [t["product_id"] for t in listed] == [str(w.cheerios.id)]
