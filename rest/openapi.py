"""Route declarations and the OpenAPI 3.1 document built from the same pydantic models that validate requests."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from rest.problems import problem_schema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["none", "user", "service"]
Limit = Literal["public", "user", "auth", "none"]
_PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_ERROR_TITLES = {
    400: "Bad request",
    401: "Missing or invalid credentials",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Rate limited",
    502: "Upstream failed",
    503: "Service unavailable",
    504: "Upstream timed out",
}


@dataclass(slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth
    limit: Limit
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()
    paged: bool = False
    cached: bool = False
    content_type: str = "application/json"
    path_params: dict[str, str] = field(default_factory=dict)
    include_in_schema: bool = True
    header_params: dict[str, str] = field(default_factory=dict)
    """Optional request headers the operation reads (name -> description)."""

    @property
    def name(self) -> str:
        return self.handler.__name__

    def all_errors(self) -> list[int]:
        codes = set(self.errors)
        if self.auth != "none":
            codes.add(401)
        if self.auth == "service":
            codes.add(403)
        if self.query is not None or self.body is not None:
            codes.add(422)
        if self.body is not None:
            codes.update((400, 413, 415))
        if self.limit != "none":
            codes.add(429)
        return sorted(codes)


class RouteTable:
    """The routes of one resource module, declared next to their handlers."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: Auth = "user",
        limit: Limit | None = None,
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        errors: Iterable[int] = (),
        paged: bool = False,
        cached: bool = False,
        content_type: str = "application/json",
        path_params: dict[str, str] | None = None,
        include_in_schema: bool = True,
        header_params: dict[str, str] | None = None,
    ) -> Callable[[Handler], Handler]:
        defaults: dict[Auth, Limit] = {"none": "public", "user": "user", "service": "none"}
        default_limit = defaults[auth]

        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method,
                    path,
                    handler,
                    summary,
                    self.tag,
                    auth,
                    limit or default_limit,
                    query,
                    body,
                    response,
                    status,
                    tuple(errors),
                    paged,
                    cached,
                    content_type,
                    path_params or {},
                    include_in_schema,
                    header_params or {},
                )
            )
            return handler

        return register

    def get(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kwargs)


class _Components:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"Problem": problem_schema()}

    def schema_of(self, annotation: Any, mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        schema = TypeAdapter(annotation).json_schema(ref_template="#/components/schemas/{model}", mode=mode)
        for name, definition in schema.pop("$defs", {}).items():
            self.schemas.setdefault(name, definition)
        return schema


def _parameters(op: Operation, components: _Components) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in _PATH_PARAM.findall(op.path):
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": op.path_params.get(name, ""),
                "schema": {"type": "string", "minLength": 1},
            }
        )
    for name, description in op.header_params.items():
        params.append(
            {
                "name": name,
                "in": "header",
                "required": False,
                "description": description,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
            }
        )
    if op.query is not None:
        schema = components.schema_of(op.query, "validation")
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if "description" in prop:
                param["description"] = prop["description"]
            if prop.get("type") == "array" or any(p.get("type") == "array" for p in prop.get("anyOf", [])):
                param["style"] = "form"
                param["explode"] = False
            params.append(param)
    return params


_PAGING_HEADERS = {
    "Link": {
        "description": 'RFC 8288 link to the next page (rel="next"), absent on the last page',
        "schema": {"type": "string"},
    }
}


_RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}


def build_spec(operations: Iterable[Operation], *, title: str, version: str, description: str) -> dict[str, Any]:
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        if not op.include_in_schema:
            continue
        path = _PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", op.path)
        entry: dict[str, Any] = {
            "operationId": op.name,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": _parameters(op, components),
        }
        doc = inspect.getdoc(op.handler)
        if doc:
            entry["description"] = doc
        if op.auth == "user":
            entry["security"] = [{"bearerAuth": []}, {"sessionCookie": []}]
        elif op.auth == "service":
            entry["security"] = [{"serviceKey": []}]
        else:
            entry["security"] = []
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": components.schema_of(op.body, "validation")}},
            }
        success: dict[str, Any] = {"description": op.summary}
        if op.response is not None:
            success["content"] = {op.content_type: {"schema": components.schema_of(op.response, "serialization")}}
        elif op.content_type != "application/json":
            success["content"] = {op.content_type: {"schema": {"type": "string"}}}
        headers: dict[str, Any] = {}
        if op.paged:
            headers.update(_PAGING_HEADERS)
        if op.cached:
            headers["ETag"] = {"description": "entity tag; send it back in If-None-Match", "schema": {"type": "string"}}
        if op.status == 201:
            headers["Location"] = {
                "description": "the created resource's URL, when it has one",
                "schema": {"type": "string"},
            }
        if headers:
            success["headers"] = headers
        responses: dict[str, Any] = {str(op.status): success}
        if op.cached:
            responses["304"] = {"description": "Not modified (If-None-Match matched the ETag)"}
        for code in op.all_errors():
            responses[str(code)] = {
                "description": _ERROR_TITLES.get(code, "Error"),
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
            if code in (429, 503):
                responses[str(code)]["headers"] = {"Retry-After": _RETRY_AFTER}
        entry["responses"] = responses
        paths.setdefault(path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or Better-Auth session token"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "better-auth.session_token"},
                "serviceKey": {"type": "apiKey", "in": "header", "name": "X-Service-Key"},
            },
        },
    }
