"""Cached JSON responses with ETag / If-None-Match."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hub import keys
from rest.middleware import operation_of
from rest.responses import JSON, dump_model, dumps


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def is_public(request: web.Request) -> bool:
    """True for a route that needs no credentials (its responses are the same for everyone)."""
    op = operation_of(request)
    return op is not None and op.auth == "none"


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = {part.strip().removeprefix("W/") for part in if_none_match.split(",")}
    return etag in candidates


def with_etag(request: web.Request, body: bytes, *, headers: dict[str, str] | None = None) -> web.Response:
    """200 with the body and its ETag, or 304 when the client already has it.

    ``no-cache``: a browser keeps the copy but revalidates it on every use (a 304 costs no body), so a read right
    after a live update never shows the old data; ``public`` only where no credentials are involved."""
    etag = etag_of(body)
    visibility = "public" if is_public(request) else "private"
    out = {"ETag": etag, "Cache-Control": f"{visibility}, no-cache", **(headers or {})}
    if _matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=out)
    return web.Response(body=body, content_type=JSON, headers=out)


async def cached_json(
    request: web.Request,
    scope: str,
    compute: Callable[[], Awaitable[Any]],
    *,
    key: str | None = None,
) -> web.Response:
    """The JSON of ``compute()`` from the cache scope (keyed by the route and query string), with ETag."""
    cache_key = key or f"{request.path}?{request.query_string}"

    async def encode() -> bytes:
        return dumps(dump_model(await compute()))

    body = await request.app[keys.cache].get_or_compute(scope, cache_key, encode)
    return with_etag(request, body)
