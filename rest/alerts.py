"""Alerts: the merged alert feed and its read state, alert settings, target-price alerts."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
)

from channels.errors import ProblemType
from hub import keys
from hub.errors import AppError
from hub.realtime.identity import unauthorized
from hub.store import alerts, users
from rest import responses
from rest.api import API
from rest.auth import require_user
from rest.openapi import RouteTable
from rest.paging import PageQuery, page_of, respond, utc_datetime
from rest.types import DecimalIn, Money, Timestamp
from rest.validation import parse_body, parse_query, path_uuid

routes = RouteTable("alerts")

ThresholdIn = Annotated[Decimal, DecimalIn("0.01", "100", "0.01")]
PriceIn = Annotated[Decimal, DecimalIn("0.01", "99999999.99", "0.01")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertsQuery(PageQuery):
    unread: bool | None = Field(None, description="true: only unread alerts; false: only read ones")


class AlertOut(BaseModel):
    id: str
    alert_type: Literal["price_increase", "shrinkflation", "price_target"]
    product_id: uuid.UUID
    product_name: str
    message: str
    triggered_at: Timestamp = Field(
        description="price_target: the instant it fired; price_increase and shrinkflation: the day of the new price "
        "or of the detection, as local midnight (YYYY-MM-DDT00:00:00)"
    )
    read: bool


class AlertReadIn(_Strict):
    read: StrictBool


class AlertSettingsIn(_Strict):
    price_increase_threshold_pct: ThresholdIn = Field(description="alert on price rises of at least this percentage")
    shrinkflation_enabled: StrictBool
    email_notifications: StrictBool


class AlertSettingsOut(BaseModel):
    price_increase_threshold_pct: Money
    shrinkflation_enabled: bool
    email_notifications: bool


class TargetIn(_Strict):
    product_id: uuid.UUID
    target_price: PriceIn


class TargetOut(BaseModel):
    id: uuid.UUID
    product_id: uuid.UUID
    product_name: str
    target_price: Money
    current_price: Money | None = Field(description="lowest latest price across stores; null when never seen")
    triggered: bool
    created_at: datetime
    triggered_at: datetime | None


def _alert_out(alert: alerts.FeedAlert) -> AlertOut:
    out = AlertOut.model_validate(alert, from_attributes=True)
    if alert.alert_type != alerts.PRICE_TARGET:
        # the feed orders these by UTC midnight of their day; callers read them as that calendar day
        out.triggered_at = alert.triggered_at.astimezone(UTC).replace(tzinfo=None)
    return out


def _settings_out(prefs: alerts.AlertPreferences) -> AlertSettingsOut:
    return AlertSettingsOut.model_validate(prefs, from_attributes=True)


def _target_out(target: alerts.TargetAlert) -> TargetOut:
    return TargetOut.model_validate(target, from_attributes=True)


def _feed_id(value: str) -> str:
    if alerts.parse_alert_id(value) is None:
        raise ValueError("not an alert id")
    return value


def _today() -> date:
    return datetime.now(UTC).date()


@routes.get(
    f"{API}/alerts",
    summary="The alert feed: price increases, shrinkflation and target prices, newest first",
    query=AlertsQuery,
    response=list[AlertOut],
    paged=True,
)
async def list_alerts(request: web.Request) -> web.Response:
    principal = await require_user(request)
    query = parse_query(request, AlertsQuery)
    page = page_of(request, query, utc_datetime, _feed_id)
    async with request.app[keys.sessionmaker]() as session:
        rows = await alerts.list_alerts(
            session,
            user_id=principal.user_id,
            today=_today(),
            unread=query.unread,
            limit=page.limit + 1,
            offset=page.offset,
            after=page.after,
        )
    return respond(request, rows, page, _alert_out, lambda row: (row.triggered_at.isoformat(), row.id))


@routes.get(f"{API}/alerts/settings", summary="The user's alert settings", response=AlertSettingsOut)
async def get_alert_settings(request: web.Request) -> web.Response:
    principal = await require_user(request)
    async with request.app[keys.sessionmaker]() as session:
        prefs = await alerts.get_alert_settings(session, user_id=principal.user_id)
    return responses.json(_settings_out(prefs))


@routes.put(
    f"{API}/alerts/settings",
    summary="Replace the user's alert settings",
    body=AlertSettingsIn,
    response=AlertSettingsOut,
)
async def put_alert_settings(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await parse_body(request, AlertSettingsIn)
    prefs = alerts.AlertPreferences(
        body.price_increase_threshold_pct, body.shrinkflation_enabled, body.email_notifications
    )
    async with request.app[keys.sessionmaker].begin() as session:
        stored = await alerts.save_alert_settings(
            session, user_id=principal.user_id, preferences=prefs, now=datetime.now(UTC)
        )
    return responses.json(_settings_out(stored))


@routes.get(
    f"{API}/alerts/targets",
    summary="The user's target-price alerts, newest first",
    query=PageQuery,
    response=list[TargetOut],
    paged=True,
)
async def list_target_alerts(request: web.Request) -> web.Response:
    principal = await require_user(request)
    page = page_of(request, parse_query(request, PageQuery), utc_datetime, uuid.UUID)
    async with request.app[keys.sessionmaker]() as session:
        rows = await alerts.list_targets(
            session, user_id=principal.user_id, limit=page.limit + 1, offset=page.offset, after=page.after
        )
    return respond(request, rows, page, _target_out, lambda row: (row.created_at.isoformat(), row.id))


@routes.post(
    f"{API}/alerts/targets",
    summary="Alert me when a product costs at most a target price",
    body=TargetIn,
    response=TargetOut,
    status=201,
    errors=(404, 409),
)
async def create_target_alert(request: web.Request) -> web.Response:
    """A target the product's current price already meets fires at once: the response shows it triggered, and its
    `cartsnitch.alerts.price_target` event and feed alert follow, as a price update's would."""
    principal = await require_user(request)
    body = await parse_body(request, TargetIn)
    async with request.app[keys.sessionmaker].begin() as session:
        if not await alerts.product_exists(session, product_id=body.product_id):
            raise AppError(ProblemType.NOT_FOUND, f"no product {body.product_id}")
        # held until the insert commits: two creations at once are one target and one 409
        if not await users.hold_user(session, user_id=principal.user_id):
            raise unauthorized("the account no longer exists")
        if await alerts.has_pending_target(session, user_id=principal.user_id, product_id=body.product_id):
            raise AppError(ProblemType.CONFLICT, "a target price for this product is already pending")
        now = datetime.now(UTC)
        target_id = await alerts.insert_target(
            session, user_id=principal.user_id, product_id=body.product_id, target_price=body.target_price, now=now
        )
        fired = await alerts.fire_if_met(session, target_id=target_id, product_id=body.product_id, now=now)
        target = await alerts.get_target(session, user_id=principal.user_id, target_id=target_id)
    if target is None:
        raise AppError(ProblemType.INTERNAL, "the new target alert could not be read back")
    if fired:
        await request.app[keys.ingest].announce_fired(fired)
    return responses.created(_target_out(target), location=f"{API}/alerts/targets/{target.id}")


@routes.get(
    f"{API}/alerts/targets/{{target_id}}",
    summary="One target-price alert (where a new one's Location points)",
    response=TargetOut,
    errors=(404,),
    path_params={"target_id": "the target alert id"},
)
async def get_target_alert(request: web.Request) -> web.Response:
    principal = await require_user(request)
    target_id = path_uuid(request, "target_id", "target alert")
    async with request.app[keys.sessionmaker]() as session:
        target = await alerts.get_target(session, user_id=principal.user_id, target_id=target_id)
    if target is None:
        raise AppError(ProblemType.NOT_FOUND, f"no target alert {target_id}")
    return responses.json(_target_out(target))


@routes.delete(
    f"{API}/alerts/targets/{{target_id}}",
    summary="Delete a target-price alert",
    status=204,
    errors=(404,),
    path_params={"target_id": "the target alert id"},
)
async def delete_target_alert(request: web.Request) -> web.Response:
    principal = await require_user(request)
    target_id = path_uuid(request, "target_id", "target alert")
    async with request.app[keys.sessionmaker].begin() as session:
        deleted = await alerts.delete_target(session, user_id=principal.user_id, target_id=target_id)
    if not deleted:
        raise AppError(ProblemType.NOT_FOUND, f"no target alert {target_id}")
    return responses.no_content()


@routes.put(
    f"{API}/alerts/{{alert_id}}/read",
    summary="Mark an alert of the feed read or unread",
    body=AlertReadIn,
    response=AlertOut,
    errors=(404,),
    path_params={"alert_id": "a feed alert id (inc:…, shr:… or tgt:…)"},
)
async def mark_alert_read(request: web.Request) -> web.Response:
    principal = await require_user(request)
    alert_id = request.match_info["alert_id"]
    body = await parse_body(request, AlertReadIn)
    async with request.app[keys.sessionmaker].begin() as session:
        alert = await alerts.get_alert(session, user_id=principal.user_id, alert_id=alert_id, today=_today())
        if alert is None:
            raise AppError(ProblemType.NOT_FOUND, f"no alert {alert_id!r} in your feed")
        await alerts.set_alert_read(
            session, user_id=principal.user_id, alert_id=alert_id, read=body.read, now=datetime.now(UTC)
        )
    return responses.json(_alert_out(alert).model_copy(update={"read": body.read}))
