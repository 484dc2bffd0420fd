"""Internal routes for the platform's services (``X-Service-Key``, never user credentials)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from channels.errors import ProblemType
from channels.events import EventType
from channels.payloads import InvalidPayload
from channels.publish import IdempotencyConflict
from hub import keys
from hub.errors import AppError, validation_error
from hub.infra.metrics import RECENT_5XX, http_status_counts
from hub.infra.security import constant_time_equals
from rest import responses
from rest.openapi import RouteTable
from rest.validation import parse_body

routes = RouteTable("internal")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_ENVELOPE_FIELDS = ("timestamp", "service", "event_type")


def require_service(request: web.Request) -> None:
    expected = request.app[keys.settings].service_key
    if not expected:
        raise AppError(ProblemType.SERVICE_UNAVAILABLE, "internal routes are disabled: set CARTSNITCH_SERVICE_KEY")
    given = request.headers.get("X-Service-Key")
    if not given:
        # RFC 9110 §11.6.1: a 401 names the scheme that would succeed
        challenge = {"WWW-Authenticate": 'X-Service-Key realm="cartsnitch-internal"'}
        raise AppError(ProblemType.UNAUTHORIZED, "send the X-Service-Key header", headers=challenge)
    if not constant_time_equals(given, expected):
        raise AppError(ProblemType.FORBIDDEN, "wrong service key")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: EventType
    payload: dict[str, Any]
    service: str = Field("internal", min_length=1, max_length=100)
    timestamp: str | None = Field(None, max_length=64, description="ISO-8601; defaults to now")


class EventAccepted(BaseModel):
    id: str = Field(description="the event id (for events the hub expands, the id of its queue entry)")


@routes.post(
    "/internal/events",
    summary="Publish one catalog event",
    auth="service",
    body=EventIn,
    response=EventAccepted,
    status=202,
    errors=(503,),
    header_params={
        "Idempotency-Key": "a key of this publish: a retry with the same key within CARTSNITCH_IDEMPOTENCY_SECONDS "
        "(24 h) records nothing and returns the first event's id; the key reused for another event is a 422"
    },
)
async def publish_event(request: web.Request) -> web.Response:
    require_service(request)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise validation_error(
            [
                {
                    "field": "Idempotency-Key",
                    "message": "must be 1 to 255 visible ASCII characters",
                    "type": "string_pattern_mismatch",
                }
            ]
        )
    body = await parse_body(request, EventIn)
    try:
        event_id = await request.app[keys.ingest].publish(
            body.event_type,
            body.payload,
            service=body.service,
            timestamp=body.timestamp,
            source="http",
            idempotency_key=idempotency_key,
        )
    except IdempotencyConflict as exc:
        raise AppError(
            ProblemType.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key recorded a different event; use a new key for a new event",
            first_id=exc.first_id,
        ) from None
    except InvalidPayload as exc:
        request.app[keys.metrics].events_invalid.labels("http").inc()
        errors = [
            {**e, "field": e["field"] if e["field"] in _ENVELOPE_FIELDS else f"payload.{e['field']}"}
            for e in exc.errors
        ]
        raise AppError(
            ProblemType.INVALID_PAYLOAD, f"the {body.event_type.value} event fails its schema", errors=errors
        ) from None
    return responses.accepted(EventAccepted(id=event_id))


class ErrorStatsOut(BaseModel):
    error_counts: dict[str, int] = Field(
        description="responses with a 4xx or 5xx status since this process started, by status"
    )
    recent_5xx_count: int = Field(description=f"server errors since this process started, counted up to {RECENT_5XX}")
    requests_total: int = Field(description="responses of any status since this process started")


@routes.get(
    "/internal/error-stats",
    summary="Error counts of this process (the old gateway's error monitor, from the Prometheus counters)",
    auth="service",
    response=ErrorStatsOut,
    errors=(503,),
)
async def get_error_stats(request: web.Request) -> web.Response:
    require_service(request)
    counts = http_status_counts(request.app[keys.metrics])
    errors = {str(status): count for status, count in sorted(counts.items()) if status >= 400}
    server_errors = sum(count for status, count in counts.items() if status >= 500)
    return responses.json(
        ErrorStatsOut(
            error_counts=errors,
            recent_5xx_count=min(server_errors, RECENT_5XX),
            requests_total=sum(counts.values()),
        )
    )
