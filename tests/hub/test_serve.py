"""The README's first command: `cartsnitch-hub serve` with no settings and no services."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
import psutil

from tests.services import free_port


async def _start(cwd: Path, port: int) -> tuple[asyncio.subprocess.Process, list[str]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CARTSNITCH_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "serve",
        "--port",
        str(port),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    lines: list[str] = []
    assert process.stdout is not None
    while len(lines) < 3:
        raw = await asyncio.wait_for(process.stdout.readline(), 60)
        assert raw, "serve ended before printing its URL"
        lines.append(raw.decode().strip())
    return process, lines


async def _health_within(url: str, seconds: float) -> float:
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - started < seconds:
            try:
                async with http.get(url + "/health") as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"no 200 from /health within {seconds} s")


async def test_serve_with_no_settings_runs_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    process, lines = await _start(tmp_path, port)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", lines[0])
        assert url is not None and url.group(0) == f"http://127.0.0.1:{port}"
        login = re.search(r"demo login: (\S+) / (\S+)", lines[1])
        assert login is not None
        assert lines[2] == f"dashboard: http://127.0.0.1:{port}/  (a simulated price change every 5 s)"
        await _health_within(url.group(0), 30)
        assert time.monotonic() - started < 30
        assert psutil.Process(process.pid).children() == []  # one process unless --workers asks for more
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                url.group(0) + "/auth/login", json={"email": login.group(1), "password": login.group(2)}
            )
            assert response.status == 200
            token = (await response.json())["access_token"]
            purchases = await http.get(url.group(0) + "/api/v1/purchases", headers={"Authorization": f"Bearer {token}"})
            assert purchases.status == 200
            assert len(await purchases.json()) > 0
            dashboard = await http.get(url.group(0) + "/")
            assert dashboard.status == 200
            assert dashboard.headers["Content-Type"].startswith("text/html")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    assert (tmp_path / "cartsnitch-hub.db").exists()
    secrets_file = tmp_path / "cartsnitch-hub.db.secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600

    again, again_lines = await _start(tmp_path, port)
    try:
        assert "demo data loaded" not in again_lines[1]
        assert again_lines[1].split(" / ")[1].split()[0] == login.group(2)
        await _health_within(f"http://127.0.0.1:{port}", 30)
    finally:
        again.send_signal(signal.SIGTERM)
        await asyncio.wait_for(again.wait(), 20)
