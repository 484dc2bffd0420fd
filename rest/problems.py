"""Every failure becomes application/problem+json (RFC 9457); no stack trace ever reaches a client."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.exc import IntegrityError

from channels.errors import PROBLEM_BASE, ProblemType
from hub import keys
from hub.errors import AppError, unavailable_dependency
from rest.responses import PROBLEM_JSON, dumps

log = logging.getLogger("hub.rest")

_BY_STATUS = {kind.status: kind for kind in reversed(ProblemType)}
_BY_STATUS[400] = ProblemType.BAD_REQUEST
_BY_STATUS[405] = ProblemType.METHOD_NOT_ALLOWED
_KEEP_HEADERS = ("Allow", "Content-Range", "Retry-After", "WWW-Authenticate")
RETRY_AFTER = "5"
_PREFLIGHT_REFUSED = "CORS preflight request failed: "


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=body["status"], headers=headers, content_type=PROBLEM_JSON)


def from_http_exception(exc: web.HTTPException, path: str) -> web.Response:
    kind = _BY_STATUS.get(exc.status)
    body: dict[str, Any] = {
        "type": kind.uri if kind else "about:blank",
        "title": kind.title if kind else exc.reason,
        "status": exc.status,
        "instance": path,
        "code": kind.code if kind else ("INTERNAL_ERROR" if exc.status >= 500 else "BAD_REQUEST"),
    }
    if exc.status == 404:
        body["detail"] = f"no route matches {path}"
    elif exc.status == 405:
        body["detail"] = f"method not allowed; allowed: {exc.headers.get('Allow', '')}"
    elif exc.status == 413:
        body["detail"] = "the request body is too large"
    elif exc.status == 417:
        body["detail"] = "the only expectation served is 100-continue"
    elif exc.status == 403 and (exc.text or "").startswith(_PREFLIGHT_REFUSED):
        # aiohttp-cors's refusal says what was refused (the origin, a method or a header)
        body["detail"] = "CORS preflight refused: " + (exc.text or "")[len(_PREFLIGHT_REFUSED) :][:200]
    headers = {name: exc.headers[name] for name in _KEEP_HEADERS if name in exc.headers}
    return problem_response(body, headers)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as exc:
        return problem_response(exc.to_dict(request.path), exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == PROBLEM_JSON:
            raise
        return from_http_exception(exc, request.path)
    except Exception as exc:
        dependency = unavailable_dependency(exc)
        if dependency is not None:
            request.app[keys.outages].report(dependency, exc)
            unavailable = AppError(
                ProblemType.SERVICE_UNAVAILABLE, f"the {dependency} is unavailable; retry in a few seconds"
            )
            return problem_response(unavailable.to_dict(request.path), {"Retry-After": RETRY_AFTER})
        if isinstance(exc, IntegrityError):
            # a write that a concurrent one made impossible (the account it belongs to was deleted meanwhile, a
            # row it refers to removed): the request conflicts with the resource's current state (RFC 9110 §15.5.10)
            log.info("%s %s conflicted with a concurrent change: %s", request.method, request.path, type(exc.orig))
            conflict = AppError(ProblemType.CONFLICT, "a change made at the same time conflicts with this request")
            return problem_response(conflict.to_dict(request.path))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(AppError(ProblemType.INTERNAL).to_dict(request.path))


def problem_schema() -> dict[str, Any]:
    """The JSON Schema of a problem document, for the OpenAPI components."""
    return {
        "type": "object",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "description": f"a URI under {PROBLEM_BASE} or about:blank"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "code": {"type": "string", "enum": sorted({kind.code for kind in ProblemType})},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message", "type"],
                    "properties": {
                        "field": {"type": "string"},
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
            },
        },
        "additionalProperties": True,
    }
