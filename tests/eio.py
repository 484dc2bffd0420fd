"""Bare Engine.IO v4 clients (HTTP long-polling and websocket) that speak the protocol packet by packet, for tests
written from the specification rather than through a client library."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import WSMsgType

RS = "\x1e"
PATH = "/socket.io/"


class Polling:
    """One long-polling session: ``open()`` then ``get()`` / ``post()`` with its sid."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base.rstrip("/")
        self.sid = ""
        self.handshake: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"{self.base}{PATH}?EIO=4&transport=polling&sid={self.sid}"

    async def open(self, **headers: str) -> Polling:
        async with self.session.get(f"{self.base}{PATH}?EIO=4&transport=polling", headers=headers) as response:
            assert response.status == 200, await response.text()
            text = await response.text()
        first = text.split(RS)[0]
        assert first.startswith("0"), text
        self.handshake = json.loads(first[1:])
        self.sid = self.handshake["sid"]
        return self

    async def get(self, timeout: float = 10.0) -> tuple[int, str]:
        async with self.session.get(self.url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return response.status, await response.text()

    async def post(self, body: str | bytes) -> tuple[int, str]:
        async with self.session.post(self.url, data=body, headers={"Content-Type": "text/plain"}) as response:
            return response.status, await response.text()

    async def packets(self, timeout: float = 10.0) -> list[str]:
        """The packets of one successful poll."""
        status, text = await self.get(timeout)
        assert status == 200, text
        return text.split(RS)


class WebSocket:
    """One websocket session, opened directly or as the upgrade of a polling session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.handshake: dict[str, Any] = {}

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, base: str, sid: str | None = None) -> WebSocket:
        url = base.rstrip("/").replace("http", "ws", 1) + f"{PATH}?EIO=4&transport=websocket"
        if sid is not None:
            return cls(await session.ws_connect(url + f"&sid={sid}", autoping=True))
        client = cls(await session.ws_connect(url, autoping=True))
        opened = await client.receive()
        assert isinstance(opened, str) and opened.startswith("0"), opened
        client.handshake = json.loads(opened[1:])
        return client

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def receive(self, timeout: float = 10.0) -> str | bytes | None:
        """The next message, or None once the server closed the connection."""
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            data: str | bytes = msg.data
            return data
        return None

    async def receive_skipping_pings(self, timeout: float = 10.0) -> str | bytes | None:
        while True:
            data = await self.receive(timeout)
            if data != "2":
                return data
            await self.send("3")

    async def closed(self, timeout: float = 10.0) -> bool:
        """True when the server closes the connection within ``timeout`` (messages before that are skipped)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.receive(timeout) is not None:
                    pass
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await self.ws.close()
