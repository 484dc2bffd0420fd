"""The README's first command: `cartsnitch-hub serve` (and `scripts/serve`) with no settings and no services."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from hub import server
from hub.app import create_app
from tests.conftest import make_settings
from tests.services import free_port


async def _serve(cwd: Path, port: int, stderr: int) -> asyncio.subprocess.Process:
    """``cartsnitch-hub serve`` in ``cwd`` with no settings of the environment's: the embedded default."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CARTSNITCH_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "serve",
        "--port",
        str(port),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )


async def _start(cwd: Path, port: int) -> tuple[asyncio.subprocess.Process, list[str]]:
    process = await _serve(cwd, port, asyncio.subprocess.DEVNULL)
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
        again.send_signal(signal.SIGINT)  # Ctrl-C on a serve that listens: a drain, as SIGTERM (README)
        assert await asyncio.wait_for(again.wait(), 20) == 0


async def test_a_port_that_cannot_be_bound_is_refused_before_anything_is_announced(sqlite_url: str) -> None:
    announced: list[bool] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with pytest.raises(server.CannotListen, match=f"^cannot listen on 127.0.0.1:{port}: Address already in use$"):
            await server.serve(
                create_app(make_settings(sqlite_url)),
                host="127.0.0.1",
                port=port,
                listening=lambda: announced.append(True),
            )
    assert announced == []


async def test_ctrl_c_during_the_first_start_exits_130_quietly(tmp_path: Path) -> None:
    process = await _serve(tmp_path, free_port(), asyncio.subprocess.PIPE)
    assert process.stderr is not None
    while b"Running upgrade" not in (line := await asyncio.wait_for(process.stderr.readline(), 30)):
        assert line, "serve ended before migrating"
    process.send_signal(signal.SIGINT)  # the migration and the demo data take a second or more
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 130
    assert stdout == b""
    assert b"Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == b"interrupted"


def _fake_command(path: Path, calls: Path, name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\n')
    path.chmod(0o755)


def test_scripts_serve_installs_only_when_the_venv_or_pyproject_is_new(tmp_path: Path) -> None:
    """The script on a copy of the repository whose Python and hub are stand-ins that log their calls."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(Path(__file__).parents[2] / "scripts" / "serve", repo / "scripts" / "serve")
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    calls = tmp_path / "calls"
    _fake_command(tmp_path / "stand-ins" / "python", calls, "python")
    _fake_command(tmp_path / "stand-ins" / "cartsnitch-hub", calls, "hub")
    # the system Python the script creates .venv with: it copies the stand-ins in
    make_venv = tmp_path / "python3"
    make_venv.write_text(f'#!/bin/sh\nmkdir -p .venv/bin && cp "{tmp_path}"/stand-ins/* .venv/bin/\n')
    make_venv.chmod(0o755)

    def serve() -> list[str]:
        calls.unlink(missing_ok=True)
        subprocess.run(
            [str(repo / "scripts" / "serve"), "--port", "9"],
            env={**os.environ, "PYTHON": str(make_venv)},
            check=True,
            timeout=30,
        )
        return calls.read_text().splitlines()

    installs = [
        "python -m pip install -q --disable-pip-version-check --upgrade pip",
        "python -m pip install -q --disable-pip-version-check -e .",
    ]
    assert serve() == [*installs, "hub serve --port 9"]
    assert serve() == ["hub serve --port 9"]
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    assert serve() == [*installs, "hub serve --port 9"]
    assert serve() == ["hub serve --port 9"]
    shutil.rmtree(repo / ".venv")
    assert serve() == [*installs, "hub serve --port 9"]


async def _lines_until_dashboard(process: asyncio.subprocess.Process) -> list[str]:
    lines: list[str] = []
    assert process.stdout is not None
    while not lines or not lines[-1].startswith("dashboard: "):
        raw = await asyncio.wait_for(process.stdout.readline(), 60)
        assert raw, f"serve ended after {lines}"
        lines.append(raw.decode().strip())
    return lines


@pytest.mark.slow
async def test_seed_by_hand_uses_the_demo_password_serve_shows_and_serve_shows_none_that_would_be_refused(
    tmp_path: Path,
) -> None:
    """`seed` on the embedded default takes the secrets file's demo password (the one `serve` shows); seeded with a
    password of its own, `serve` shows no demo login line rather than one that would be refused."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTSNITCH_")}
    sizes = ["--users", "2", "--products", "10", "--price-rows", "50", "--purchases", "3"]

    def seed(cwd: Path, *extra: str) -> str:
        cwd.mkdir()
        done = subprocess.run(
            [sys.executable, "-m", "hub.cli", "seed", *sizes, *extra], cwd=cwd, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    shown = re.findall(r"demo login: \S+ / (\S+)", seed(tmp_path / "stored"))
    stored = json.loads((tmp_path / "stored" / "cartsnitch-hub.db.secrets.json").read_text())["demo_password"]
    assert shown == [stored]
    assert "demo login" not in seed(tmp_path / "own", "--demo-password", "a-password-of-my-own")
    port = free_port()
    process = await _serve(tmp_path / "own", port, asyncio.subprocess.DEVNULL)
    try:
        lines = await _lines_until_dashboard(process)
        assert not [line for line in lines if "demo login" in line], lines
        await _health_within(f"http://127.0.0.1:{port}", 30)
        async with aiohttp.ClientSession() as http:
            login = {"email": "demo@cartsnitch.local", "password": "a-password-of-my-own"}
            response = await http.post(f"http://127.0.0.1:{port}/auth/login", json=login)
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
