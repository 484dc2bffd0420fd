"""Runs the official Socket.IO JavaScript client (tests/js/client.js) as a subprocess and reads what it saw."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from tests.services import unavailable

JS_DIR = Path(__file__).resolve().parent / "js"


def require_node() -> str:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "socket.io-client").exists():
        unavailable("Node.js with tests/js/node_modules (npm ci in tests/js)")
    assert node is not None
    return node


class JsClient:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, url: str, namespace: str, **options: Any) -> JsClient:
        node = require_node()
        spec = json.dumps({"url": url, "namespace": namespace, **options})
        process = await asyncio.create_subprocess_exec(
            node, str(JS_DIR / "client.js"), spec, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        return cls(process)

    async def next_line(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not raw:
            stderr = await self.process.stderr.read() if self.process.stderr else b""
            raise AssertionError(f"the JS client ended early: {stderr.decode()[-2000:]}")
        line: dict[str, Any] = json.loads(raw)
        self.lines.append(line)
        return line

    async def until(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            line = await self.next_line(timeout)
            if line["type"] == kind:
                return line

    async def finish(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        while not self.lines or self.lines[-1]["type"] != "done":
            await self.next_line(timeout)
        await asyncio.wait_for(self.process.wait(), timeout)
        return self.lines

    def events(self) -> list[tuple[str, Any]]:
        return [(line["name"], line["args"][0]) for line in self.lines if line["type"] == "event"]

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
