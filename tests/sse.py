"""A Server-Sent Events reader for tests: events as they arrive, and whether the server ended the stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer


class SseStream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[dict[str, Any]] = []
        self.ended = False

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> SseStream:
        response = await http.get(url, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=None))
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return cls(response)

    async def next(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """The next event ({id?, event, data (parsed)}), or None when the server closed the stream."""
        current: dict[str, Any] = {}
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), timeout)
            if not raw:
                self.ended = True
                return None
            line = raw.decode().rstrip("\n")
            if line == "":
                if "data" in current:
                    current["data"] = json.loads(current["data"])
                    self.events.append(current)
                    return current
                current = {}
            elif not line.startswith(":") and ":" in line:
                name, _, value = line.partition(": ")
                current[name] = value

    async def until_end(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every event until the server closes the stream (fails after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while await self.next(timeout) is not None:
                pass
        return self.events

    def close(self) -> None:
        self.response.close()


async def stream_ticket(http: aiohttp.ClientSession, server: TestServer, headers: dict[str, str]) -> str:
    """A ticket for the user's event stream, asked for with ``headers``' credentials."""
    response = await http.post(server.make_url("/api/v1/me/events/ticket"), headers=headers)
    assert response.status == 200, await response.text()
    ticket: str = (await response.json())["ticket"]
    return ticket
