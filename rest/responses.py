"""orjson-backed responses."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)


def dump_model(data: Any) -> Any:
    """Pydantic models (or lists of them) as JSON-ready Python values."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list) and data and isinstance(data[0], BaseModel):
        return [item.model_dump(mode="json") for item in data]
    return data


def json(
    data: Any,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = JSON,
) -> web.Response:
    return web.Response(body=dumps(dump_model(data)), status=status, headers=headers, content_type=content_type)


def created(data: Any, *, location: str | None = None) -> web.Response:
    return json(data, status=201, headers={"Location": location} if location else None)


def accepted(data: Any) -> web.Response:
    return json(data, status=202)


def no_content() -> web.Response:
    return web.Response(status=204)
