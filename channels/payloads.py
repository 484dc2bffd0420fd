"""Payload schemas of the catalog events, their validation and the envelope that carries them."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from channels.events import AUDIENCE, Audience, EventType, parse_event_type
from channels.rooms import is_valid_id

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_STRING = 2000
MAX_LIST = 1000


class Kind(Enum):
    ID = "id"
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    MONEY = "money"
    FRACTION = "fraction"
    DATE = "date"
    DATE_OR_EMPTY = "date_or_empty"
    ENUM = "enum"
    ID_LIST = "id_list"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    required: bool = True
    nullable: bool = False
    choices: tuple[str, ...] = ()
    allow_empty: bool = False


class InvalidPayload(ValueError):
    """A payload failed its event's schema; ``errors`` lists every failure as ``{field, message, type}``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def nul_fields(data: Any, path: str = "") -> list[str]:
    """Where ``data`` holds a NUL character, as dotted paths (PostgreSQL cannot store one in text, so the hub's HTTP
    routes refuse it anywhere in a body; every publish path refuses it the same way)."""
    if isinstance(data, str):
        return [path] if "\x00" in data else []
    if isinstance(data, dict):
        return [f for key, value in data.items() for f in nul_fields(value, f"{path}.{key}" if path else str(key))]
    if isinstance(data, list):
        return [f for i, value in enumerate(data) for f in nul_fields(value, f"{path}.{i}" if path else str(i))]
    return []


def refuse_nul(encoded: str | bytes, data: Any, path: str = "") -> None:
    """Raise InvalidPayload naming every field of ``data`` that holds a NUL. ``encoded`` is its JSON text: JSON
    carries a NUL only escaped, so text without the escape is passed over without walking ``data``."""
    if "\\u0000" not in encoded if isinstance(encoded, str) else b"\\u0000" not in encoded:
        return
    fields = nul_fields(data, path)
    if fields:
        raise InvalidPayload(
            [{"field": field, "message": "must not contain NUL characters", "type": "string_nul"} for field in fields]
        )


_USER = Field("user_id", Kind.ID)
_OPTIONAL_USER = Field("user_id", Kind.ID, required=False, nullable=True)

SCHEMAS: dict[EventType, tuple[Field, ...]] = {
    EventType.SYNC_PROGRESS: (
        _USER,
        Field("store_slug", Kind.STRING),
        Field("job_id", Kind.STRING),
        Field("status", Kind.ENUM, choices=("queued", "running", "succeeded", "failed")),
        Field("progress", Kind.FRACTION, required=False),
        Field("items_synced", Kind.INTEGER, required=False),
        Field("message", Kind.STRING, required=False, nullable=True, allow_empty=True),
    ),
    EventType.RECEIPTS_INGESTED: (
        _USER,
        Field("store_slug", Kind.STRING),
        Field("purchase_id", Kind.STRING, allow_empty=True),
        Field("purchase_date", Kind.DATE_OR_EMPTY),
        Field("item_count", Kind.INTEGER),
        Field("total", Kind.MONEY),
    ),
    EventType.ALERTS_PRICE_INCREASE: (
        _OPTIONAL_USER,
        Field("product_id", Kind.ID),
        Field("product_name", Kind.STRING),
        Field("store_id", Kind.STRING),
        Field("store_slug", Kind.STRING),
        Field("old_price", Kind.MONEY),
        Field("new_price", Kind.MONEY),
        Field("change_pct", Kind.NUMBER),
        Field("old_date", Kind.DATE),
        Field("new_date", Kind.DATE),
    ),
    EventType.ALERTS_SHRINKFLATION: (
        _OPTIONAL_USER,
        Field("product_id", Kind.ID),
        Field("product_name", Kind.STRING),
        Field("old_size", Kind.NUMBER),
        Field("new_size", Kind.NUMBER),
        Field("old_unit", Kind.STRING),
        Field("new_unit", Kind.STRING),
        Field("price_at_old_size", Kind.MONEY),
        Field("price_at_new_size", Kind.MONEY),
        Field("confidence", Kind.FRACTION),
        Field("detected_date", Kind.DATE),
    ),
    EventType.ALERTS_PRICE_TARGET: (
        _USER,
        Field("alert_id", Kind.STRING),
        Field("product_id", Kind.ID),
        Field("product_name", Kind.STRING),
        Field("store_slug", Kind.STRING),
        Field("target_price", Kind.MONEY),
        Field("current_price", Kind.MONEY),
    ),
    EventType.PRICES_UPDATED: (
        Field("product_id", Kind.ID),
        Field("store_id", Kind.STRING),
        Field("store_slug", Kind.STRING),
        Field("observed_date", Kind.DATE),
        Field("regular_price", Kind.MONEY),
        Field("sale_price", Kind.MONEY, required=False, nullable=True),
    ),
    EventType.COUPONS_UPDATED: (
        Field("store_slug", Kind.STRING),
        Field("coupon_ids", Kind.ID_LIST),
    ),
    EventType.PRODUCTS_NORMALIZED: (Field("product_id", Kind.ID),),
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_id(field: Field, value: object) -> tuple[str, str] | None:
    return None if is_valid_id(value) else ("must be an id of letters, digits, '-' or '_'", "id")


def _check_string(field: Field, value: object) -> tuple[str, str] | None:
    if not isinstance(value, str):
        return ("must be a string", "string_type")
    if not value and not field.allow_empty:
        return ("must not be empty", "string_too_short")
    return ("is longer than 2000 characters", "string_too_long") if len(value) > MAX_STRING else None


def _check_integer(field: Field, value: object) -> tuple[str, str] | None:
    ok = type(value) is int and value >= 0
    return None if ok else ("must be a non-negative integer", "int_type")


def _check_number(field: Field, value: object) -> tuple[str, str] | None:
    return None if _is_number(value) else ("must be a number", "number_type")


def _check_fraction(field: Field, value: object) -> tuple[str, str] | None:
    ok = _is_number(value) and 0 <= value <= 1  # type: ignore[operator]
    return None if ok else ("must be a number from 0 to 1", "number_range")


def _check_money(field: Field, value: object) -> tuple[str, str] | None:
    if _is_number(value):
        return None if value >= 0 else ("must not be negative", "number_range")  # type: ignore[operator]
    if isinstance(value, str):
        try:
            amount = Decimal(value)
        except InvalidOperation:
            return ("must be a number or a decimal string", "number_type")
        return None if amount.is_finite() and amount >= 0 else ("must be a non-negative amount", "number_range")
    return ("must be a number", "number_type")


def _check_date(field: Field, value: object) -> tuple[str, str] | None:
    if field.kind is Kind.DATE_OR_EMPTY and value == "":
        return None
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            return ("is not a calendar date", "date_from_datetime_parsing")
        return None
    return ("must be a date YYYY-MM-DD", "date_type")


def _check_enum(field: Field, value: object) -> tuple[str, str] | None:
    return None if value in field.choices else (f"must be one of {', '.join(field.choices)}", "enum")


def _check_id_list(field: Field, value: object) -> tuple[str, str] | None:
    ok = isinstance(value, list) and len(value) <= MAX_LIST and all(is_valid_id(v) for v in value)
    return None if ok else ("must be a list of at most 1000 ids", "list_type")


_CHECKS: dict[Kind, Callable[[Field, object], tuple[str, str] | None]] = {
    Kind.ID: _check_id,
    Kind.STRING: _check_string,
    Kind.INTEGER: _check_integer,
    Kind.NUMBER: _check_number,
    Kind.FRACTION: _check_fraction,
    Kind.MONEY: _check_money,
    Kind.DATE: _check_date,
    Kind.DATE_OR_EMPTY: _check_date,
    Kind.ENUM: _check_enum,
    Kind.ID_LIST: _check_id_list,
}
_COMPILED = {kind: tuple((f, _CHECKS[f.kind]) for f in fields) for kind, fields in SCHEMAS.items()}


def validate_payload(event_type: EventType | str, payload: object) -> dict[str, Any]:
    """Check ``payload`` against the schema of ``event_type``; return it (extra fields kept) or raise InvalidPayload."""
    kind = event_type if isinstance(event_type, EventType) else parse_event_type(event_type)
    if kind is None:
        raise InvalidPayload([{"field": "event_type", "message": f"unknown event type {event_type!r}", "type": "enum"}])
    if not isinstance(payload, Mapping):
        raise InvalidPayload([{"field": "payload", "message": "must be an object", "type": "dict_type"}])
    errors: list[dict[str, str]] = []
    for field, check in _COMPILED[kind]:
        if field.name not in payload:
            if field.required:
                errors.append({"field": field.name, "message": "is required", "type": "missing"})
            continue
        value = payload[field.name]
        if value is None:
            if not field.nullable:
                errors.append({"field": field.name, "message": "must not be null", "type": "null"})
            continue
        failure = check(field, value)
        if failure:
            errors.append({"field": field.name, "message": failure[0], "type": failure[1]})
    if errors:
        raise InvalidPayload(errors)
    if AUDIENCE[kind] is Audience.USER_OR_BUYERS and payload.get("user_id") == "":
        raise InvalidPayload([{"field": "user_id", "message": "must be an id or absent", "type": "id"}])
    return payload if type(payload) is dict else dict(payload)


_JSON_TYPES: dict[Kind, dict[str, Any]] = {
    Kind.ID: {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
    Kind.STRING: {"type": "string", "maxLength": MAX_STRING},
    Kind.INTEGER: {"type": "integer", "minimum": 0},
    Kind.NUMBER: {"type": "number"},
    Kind.FRACTION: {"type": "number", "minimum": 0, "maximum": 1},
    Kind.MONEY: {"oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": r"^\d+(\.\d+)?$"}]},
    Kind.DATE: {"type": "string", "format": "date"},
    Kind.DATE_OR_EMPTY: {"oneOf": [{"type": "string", "format": "date"}, {"const": ""}]},
    Kind.ENUM: {"type": "string"},
    Kind.ID_LIST: {"type": "array", "items": {"type": "string"}, "maxItems": MAX_LIST},
}


def json_schema(event_type: EventType) -> dict[str, Any]:
    """The JSON Schema of one event's payload (extra members allowed)."""
    properties: dict[str, Any] = {}
    for field in SCHEMAS[event_type]:
        schema = dict(_JSON_TYPES[field.kind])
        if field.kind is Kind.ENUM:
            schema["enum"] = list(field.choices)
        if field.nullable:
            schema = {"oneOf": [schema, {"type": "null"}]}
        properties[field.name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": [f.name for f in SCHEMAS[event_type] if f.required],
        "additionalProperties": True,
    }


def utc_timestamp(moment: datetime | None = None) -> str:
    """An ISO-8601 UTC timestamp as the envelope carries it."""
    return (moment or datetime.now(UTC)).astimezone(UTC).isoformat()


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC, a naive one taken as UTC (what ``datetime.utcnow()`` gives); ValueError when it has no UTC
    equivalent (``9999-12-31T23:59:59-05:00``)."""
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


def utc_form(timestamp: str) -> str | None:
    """``timestamp`` (ISO-8601) as the envelope carries it: in UTC (``as_utc``). One already in UTC is kept as
    written. None when it is not an ISO-8601 date-time, is longer than 64 characters, or has no UTC equivalent."""
    if len(timestamp) > 64:
        return None
    try:
        moment = datetime.fromisoformat(timestamp)
        if moment.tzinfo is not None and not moment.utcoffset():
            return timestamp
        return as_utc(moment).isoformat()
    except ValueError:
        return None


def build_envelope(
    event_type: EventType, payload: Mapping[str, Any], *, service: str, timestamp: str | None = None
) -> dict[str, Any]:
    """The envelope without ``id``, members in wire order (``event_type`` first)."""
    if timestamp is not None:
        normal = utc_form(timestamp)
        if normal is None:
            raise InvalidPayload(
                [{"field": "timestamp", "message": "must be an ISO-8601 date-time", "type": "datetime_type"}]
            )
        timestamp = normal
    return {
        "event_type": event_type.value,
        "timestamp": timestamp or utc_timestamp(),
        "service": service,
        "payload": dict(payload),
    }
