"""Which browser origins may use the credentialed API: the configured allow-list and the hub's own origin.

Public reads, the public SSE stream and the ``/public`` namespace answer any origin without credentials (a listed
origin keeps them); this
policy guards what a browser's cookies or tokens could reach: user-scoped CORS, user namespaces and cookie-authenticated
state-changing requests (CSRF)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class OriginPolicy:
    __slots__ = ("allowed",)

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(origin.rstrip("/") for origin in allowed)

    def allows(self, origin: str, host: str | None) -> bool:
        """True for a listed origin, or the origin the request was sent to (a page the hub served itself)."""
        if origin in self.allowed:
            return True
        if not host or origin == "null":
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()

    def allows_request(self, headers: Mapping[str, str]) -> bool:
        """Whether a browser request may act with the user's cookie: its ``Origin`` is allowed, or, without one,
        ``Sec-Fetch-Site`` says the user or this site started it. A request that shows neither is refused (the
        contract's rule): browsers send one of them on every state-changing request, and a client that is not a
        browser can send a bearer token instead of the cookie."""
        origin = headers.get("Origin")
        if origin is not None:
            return self.allows(origin, headers.get("Host"))
        return headers.get("Sec-Fetch-Site") in ("same-origin", "none")
