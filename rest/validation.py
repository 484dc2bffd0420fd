"""Request parsing: query strings and JSON bodies into pydantic models, failures into 400/404/422 problems."""

from __future__ import annotations

import asyncio
import typing
import uuid
from types import UnionType
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from channels.errors import ProblemType
from channels.payloads import nul_fields
from hub import keys
from hub.errors import AppError, validation_error

M = TypeVar("M", bound=BaseModel)
MAX_JSON_BODY = 1 << 20
# no body of ours nests deeper than a few levels; the parser allows 1,024, and what the hub does with a value
# afterwards (validation, re-encoding an event's payload) must not run out of stack on one a client made deep
MAX_JSON_DEPTH = 32


def errors_of(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic errors as the contract's ``[{field, message, type}]``."""
    out = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(str(part) for part in error["loc"]) or prefix or "body"
        out.append(
            {
                "field": f"{prefix}.{loc}" if prefix and error["loc"] else loc,
                "message": error["msg"],
                "type": error["type"],
            }
        )
    return out


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    if origin in (typing.Union, UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return False


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether ``data`` nests containers more than ``limit`` levels deep (iteratively: no recursion on its depth)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _refuse_deep(raw: bytes, data: Any) -> None:
    # a body with no more than MAX_JSON_DEPTH brackets cannot nest deeper; counting them is C-fast
    if not isinstance(data, dict | list) or raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return
    if _deeper_than(data, MAX_JSON_DEPTH):
        raise validation_error(
            [{"field": "body", "message": f"nests deeper than {MAX_JSON_DEPTH} levels", "type": "too_deep"}],
            f"the body nests deeper than {MAX_JSON_DEPTH} levels",
        )


def _refuse_nul(data: Any, where: str) -> None:
    fields = nul_fields(data)
    if fields:
        raise validation_error(
            [{"field": field, "message": "must not contain NUL characters", "type": "string_nul"} for field in fields],
            f"the {where} contains NUL characters",
        )


def parse_query(request: web.Request, model: type[M]) -> M:
    """Validate the query string; list-typed fields accept repeated keys and comma-separated values."""
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in request.query:
            continue
        values = request.query.getall(key)
        if _is_list(field.annotation):
            data[key] = [part.strip() for value in values for part in value.split(",") if part.strip()]
        else:
            data[key] = values[-1]
    _refuse_nul(data, "query string")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(errors_of(exc), "the query string is not valid") from None


async def read_json(request: web.Request) -> Any:
    """The JSON body; 415 when it is not JSON, 413 when too large, 400 when malformed."""
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise AppError(ProblemType.PAYLOAD_TOO_LARGE, f"the body is limited to {MAX_JSON_BODY} bytes")
    # a body without a Content-Type is read as JSON, as the old gateway did (aiohttp would call it octet-stream)
    if (
        request.can_read_body
        and "Content-Type" in request.headers
        and request.content_type not in ("application/json", "application/problem+json")
        and not request.content_type.endswith("+json")
    ):
        raise AppError(ProblemType.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
    timeout = request.app[keys.settings].http_body_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()  # the whole body, however many pieces it arrives in
    except web.HTTPRequestEntityTooLarge:
        raise AppError(ProblemType.PAYLOAD_TOO_LARGE, f"the body is limited to {MAX_JSON_BODY} bytes") from None
    except TimeoutError:
        raise AppError(ProblemType.REQUEST_TIMEOUT, f"the body did not arrive within {timeout:g} s") from None
    if len(raw) > MAX_JSON_BODY:
        raise AppError(ProblemType.PAYLOAD_TOO_LARGE, f"the body is limited to {MAX_JSON_BODY} bytes")
    if not raw.strip():
        raise AppError(ProblemType.MALFORMED_JSON, "the request needs a JSON body")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AppError(ProblemType.MALFORMED_JSON, f"the body is not valid JSON: {exc.msg}") from None
    _refuse_deep(raw, data)
    # JSON text carries a NUL only escaped (a raw control character is malformed): no escape, nothing to look for
    if b"\\u0000" in raw:
        _refuse_nul(data, "body")
    return data


async def parse_body(request: web.Request, model: type[M]) -> M:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise validation_error([{"field": "body", "message": "must be a JSON object", "type": "dict_type"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(errors_of(exc), "the request body is not valid") from None


def path_uuid(request: web.Request, name: str, what: str = "resource") -> uuid.UUID:
    """A UUID path parameter; anything else cannot name an existing row, so it is a 404."""
    raw = request.match_info.get(name, "")
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise AppError(ProblemType.NOT_FOUND, f"no {what} {raw!r}") from None
