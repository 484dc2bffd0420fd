"""A python-socketio client of one user that records every event with its arrival time and resumes with
last_event_id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import socketio

RESYNC = "cartsnitch.resync"


class Follower:
    def __init__(self, user_id: str, token: str) -> None:
        self.user_id = user_id
        self.token = token
        self.events: list[tuple[float, str, Any]] = []
        """(arrival, event name, the single argument) of every event."""
        self.arguments: list[tuple[Any, ...]] = []
        self.client: socketio.AsyncClient | None = None
        self.gone = asyncio.Event()
        self.refusals: list[Any] = []
        self._changed = asyncio.Event()

    @property
    def namespace(self) -> str:
        return f"/users/{self.user_id}"

    def last_id(self) -> str | None:
        ids = self.ids()
        return ids[-1] if ids else None

    def ids(self) -> list[str]:
        return [arg["id"] for _, name, arg in self.events if name != RESYNC and isinstance(arg, dict) and "id" in arg]

    def items(self) -> list[int]:
        """``items_synced`` of every catalog event received, in order (the tests number their events with it)."""
        return [arg["payload"]["items_synced"] for _, name, arg in self.events if name == "cartsnitch.sync.progress"]

    def resyncs(self) -> list[str]:
        return [arg["payload"]["reason"] for _, name, arg in self.events if name == RESYNC]

    async def connect(self, url: str, *, resume: bool = True, timeout: float = 10) -> None:
        client = socketio.AsyncClient(reconnection=False)

        def record(event: str, *args: Any) -> None:
            self.events.append((time.monotonic(), event, args[0] if args else None))
            self.arguments.append(args)
            self._changed.set()

        client.on("*", record, namespace=self.namespace)
        client.on("connect_error", self.refusals.append, namespace=self.namespace)
        client.on("disconnect", lambda *_: self.gone.set(), namespace=self.namespace)
        auth: dict[str, Any] = {"token": self.token}
        if resume and self.last_id():
            auth["last_event_id"] = self.last_id()
        self.gone.clear()
        await client.connect(
            url, namespaces=[self.namespace], auth=auth, transports=["websocket"], wait_timeout=timeout
        )
        self.client = client

    async def wait(self, done: Callable[[Follower], bool], timeout: float = 10) -> None:
        """Until ``done(self)`` holds; fails after ``timeout`` seconds."""

        async def until() -> None:
            while not done(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    async def wait_items(self, count: int, timeout: float = 10) -> None:
        await self.wait(lambda f: len(f.items()) >= count, timeout)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.disconnect()
            self.client = None
