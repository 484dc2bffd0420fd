"""Paging: ``page``/``page_size`` and an opaque keyset ``cursor``; the next page goes in a ``Link`` header."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from channels.payloads import as_utc
from hub.errors import AppError, validation_error
from rest import responses

MAX_PAGE = 10_000


class CursorQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cursor: str | None = Field(
        None, max_length=512, pattern=r"^[A-Za-z0-9_-]+$", description="opaque keyset cursor from a Link rel=next"
    )


class PageQuery(CursorQuery):
    page: int = Field(1, ge=1, le=MAX_PAGE, description="1-based page number (offset paging)")
    page_size: int = Field(20, ge=1, le=100, description="items per page")


@dataclass(frozen=True, slots=True)
class Page:
    """What a list query needs: how many rows, and either an offset or the keyset position to continue after."""

    limit: int
    offset: int
    after: tuple[Any, ...] | None


def route_of(request: web.Request) -> str:
    """The route a request matched (its path template), which a cursor is bound to."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def _tag(route: str) -> str:
    return hashlib.blake2s(route.encode(), digest_size=4).hexdigest()


def encode_cursor(values: Sequence[Any], route: str) -> str:
    """The cursor after a row whose sort key is ``values``, for the list at ``route`` (a path template): another
    list refuses it (a 422), however alike their keys."""
    raw = orjson.dumps([_tag(route), *(str(v) for v in values)])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def utc_datetime(raw: str) -> dt.datetime:
    """A cursor's timestamp as an aware UTC datetime (naive means UTC); ValueError when it is not one."""
    return as_utc(dt.datetime.fromisoformat(raw))


def page_of(request: web.Request, query: PageQuery, *parsers: Callable[[str], Any]) -> Page:
    """The page the query asks for; the cursor's values are parsed with ``parsers`` (422 when they do not fit, or
    when the cursor is another list's)."""
    if query.cursor is None:
        return Page(query.page_size, (query.page - 1) * query.page_size, None)
    try:
        padded = query.cursor + "=" * (-len(query.cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise _foreign_cursor() from None
    if (
        not isinstance(values, list)
        or len(values) != len(parsers) + 1
        or not all(isinstance(v, str) for v in values)
        or values[0] != _tag(route_of(request))
    ):
        raise _foreign_cursor()
    try:
        return Page(query.page_size, 0, tuple(parse(v) for parse, v in zip(parsers, values[1:], strict=True)))
    except (ValueError, TypeError):
        raise _foreign_cursor() from None


def capped_page(request: web.Request, cursor: str | None, limit: int, *parsers: Callable[[str], Any]) -> Page:
    """The first ``limit`` rows of a list, or the ``limit`` rows after a cursor it issued: for lists that take no
    ``page`` or ``page_size`` (the PWA profile's)."""
    return page_of(request, PageQuery.model_construct(page=1, page_size=limit, cursor=cursor), *parsers)


def _foreign_cursor() -> AppError:
    return validation_error([{"field": "cursor", "message": "is not a cursor this list issued", "type": "value_error"}])


def respond(
    request: web.Request,
    rows: Sequence[Any],
    page: Page,
    render: Callable[[Any], Any],
    key: Callable[[Any], Sequence[Any]],
    *,
    model: type[BaseModel] | None = None,
) -> web.Response:
    """A bare JSON array of ``page.limit`` rendered rows (the query fetched one more to know whether a next page
    exists) and, when it does, ``Link: <…cursor=…>; rel="next"``. With ``model``, ``render`` gives plain dicts
    that are validated as that model in one pass over the page: far cheaper than a model per row when rows
    nest lists of their own."""
    has_next = len(rows) > page.limit
    shown = rows[: page.limit]
    headers = {}
    if has_next and shown:
        query = {k: v for k, v in request.rel_url.query.items() if k not in ("cursor", "page")}
        query["cursor"] = encode_cursor(key(shown[-1]), route_of(request))
        headers["Link"] = f'<{request.rel_url.with_query(query)}>; rel="next"'
    items = [render(row) for row in shown]
    if model is not None:
        adapter = _list_of(model)
        return web.Response(
            body=adapter.dump_json(adapter.validate_python(items)), headers=headers, content_type=responses.JSON
        )
    if items and isinstance(items[0], BaseModel):
        # pydantic writes the whole page in one call, about a third cheaper than dumping each model to a dict first
        body = _list_of(type(items[0])).dump_json(items)
        return web.Response(body=body, headers=headers, content_type=responses.JSON)
    return responses.json(items, headers=headers)


@functools.cache
def _list_of(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]
