"""The problem-type catalogue shared by REST responses (RFC 9457) and socket acks and connect errors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

PROBLEM_BASE = "https://cartsnitch.com/problems/"


@dataclass(frozen=True, slots=True)
class _Kind:
    slug: str
    title: str
    status: int
    code: str


class ProblemType(Enum):
    """Every problem the service reports; ``code`` is the old gateway's error code, kept as an extension."""

    BAD_REQUEST = _Kind("bad-request", "Bad request", 400, "BAD_REQUEST")
    MALFORMED_JSON = _Kind("malformed-json", "Malformed JSON body", 400, "BAD_REQUEST")
    UNAUTHORIZED = _Kind("unauthorized", "Unauthorized", 401, "UNAUTHORIZED")
    FORBIDDEN = _Kind("forbidden", "Forbidden", 403, "FORBIDDEN")
    NOT_FOUND = _Kind("not-found", "Not found", 404, "NOT_FOUND")
    METHOD_NOT_ALLOWED = _Kind("method-not-allowed", "Method not allowed", 405, "BAD_REQUEST")
    REQUEST_TIMEOUT = _Kind("request-timeout", "Request timeout", 408, "BAD_REQUEST")
    CONFLICT = _Kind("conflict", "Conflict", 409, "CONFLICT")
    PAYLOAD_TOO_LARGE = _Kind("payload-too-large", "Payload too large", 413, "BAD_REQUEST")
    URI_TOO_LONG = _Kind("uri-too-long", "URI too long", 414, "BAD_REQUEST")
    UNSUPPORTED_MEDIA_TYPE = _Kind("unsupported-media-type", "Unsupported media type", 415, "BAD_REQUEST")
    VALIDATION = _Kind("validation", "Validation failed", 422, "VALIDATION_ERROR")
    INVALID_PAYLOAD = _Kind("invalid-payload", "Event payload fails its schema", 422, "VALIDATION_ERROR")
    IDEMPOTENCY_KEY_REUSED = _Kind(
        "idempotency-key-reused", "Idempotency-Key used for a different event", 422, "VALIDATION_ERROR"
    )
    HEADERS_TOO_LARGE = _Kind("headers-too-large", "Request header fields too large", 431, "BAD_REQUEST")
    RATE_LIMITED = _Kind("rate-limited", "Too many requests", 429, "RATE_LIMITED")
    INTERNAL = _Kind("internal", "Internal server error", 500, "INTERNAL_ERROR")
    BAD_GATEWAY = _Kind("bad-gateway", "Upstream service failed", 502, "BAD_GATEWAY")
    SERVICE_UNAVAILABLE = _Kind("service-unavailable", "Service unavailable", 503, "SERVICE_UNAVAILABLE")
    GATEWAY_TIMEOUT = _Kind("gateway-timeout", "Upstream service timed out", 504, "BAD_GATEWAY")

    @property
    def slug(self) -> str:
        return self.value.slug

    @property
    def title(self) -> str:
        return self.value.title

    @property
    def status(self) -> int:
        return self.value.status

    @property
    def code(self) -> str:
        return self.value.code

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.value.slug


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem occurrence: its type, a human-readable detail and extension members."""

    type: ProblemType
    detail: str | None = None
    extensions: dict[str, Any] | None = None

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 members (absent ones omitted) plus ``code`` and any extensions."""
        body: dict[str, Any] = {
            "type": self.type.uri,
            "title": self.type.title,
            "status": self.type.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body["code"] = self.type.code
        if self.extensions:
            body.update(self.extensions)
        return body
