"""The cartsnitch-hub command when something around it is wrong: one line naming what failed, no traceback, no
credential, a non-zero exit, and nothing created on the way."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from sqlalchemy.engine import make_url

from tests.hub.test_cli import run
from tests.services import free_port

PASSWORD = "sekrit-pw-4711"
PAYLOAD = '{"user_id": "u1", "store_slug": "kroger", "job_id": "j", "status": "queued"}'
PUBLISH = ["publish", "cartsnitch.sync.progress", "--payload", PAYLOAD]


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def secret_env(database_url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {
        "CARTSNITCH_DATABASE_URL": database_url,
        "CARTSNITCH_DEV_MODE": "false",
        "CARTSNITCH_JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "CARTSNITCH_SERVICE_KEY": secrets.token_urlsafe(32),
        "CARTSNITCH_FERNET_KEY": Fernet.generate_key().decode(),
        "CARTSNITCH_DATABASE_TIMEOUT_SECONDS": "1",
    }


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port whose connections the kernel accepts and nobody ever answers (a frozen database server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


@contextlib.contextmanager
def http_stub(status: int, body: bytes, content_type: str) -> Iterator[tuple[int, list[tuple[str, str | None]]]]:
    """A server answering every POST with the same response; yields its port and the (path, X-Service-Key) seen."""
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append((self.path, self.headers.get("X-Service-Key")))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def timed_run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run(args, env, timeout=30)
    return result, time.monotonic() - started


@pytest.mark.postgres
def test_a_database_that_refuses_hangs_or_is_missing_costs_one_line_within_its_timeout(pg_admin_url: str) -> None:
    refused = f"postgresql://hub:{PASSWORD}@127.0.0.1:{free_port()}/hub"
    missing = make_url(pg_admin_url).set(password=PASSWORD, database="no_such_db").render_as_string(False)
    commands = [
        ["migrate"],
        ["seed", "--users", "1", "--products", "1", "--price-rows", "1", "--purchases", "1"],
        ["token", "u1"],
        ["serve", "--port"],
    ]
    with silent_listener() as frozen_port:
        frozen = f"postgresql://hub:{PASSWORD}@127.0.0.1:{frozen_port}/hub"
        cases = [
            ([*command, str(free_port())] if command[-1] == "--port" else command, url)
            for url in (refused, frozen)
            for command in commands
        ]
        cases += [(["migrate"], missing), (["token", "u1"], missing)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda case: timed_run(case[0], secret_env(case[1])), cases))
    for (command, url), (result, seconds) in zip(cases, results, strict=True):
        assert result.returncode == 1, (command, url, result.stderr)
        line = one_line(result)
        assert PASSWORD not in line and result.stdout == ""
        assert line.startswith("cannot use the database postgresql+asyncpg://hub:***@127.0.0.1:"), line
        if url == refused:
            assert line.endswith("Connection refused"), line
        elif url == frozen:
            assert line.endswith("no answer within 1 s (CARTSNITCH_DATABASE_TIMEOUT_SECONDS)"), line
            assert seconds < 10, (command, seconds)
        else:
            assert line.endswith('database "no_such_db" does not exist'), line


def test_an_unknown_revision_is_one_line(tmp_path: Path) -> None:
    result = run(["migrate", "--revision", "nope"], secret_env(f"sqlite:///{tmp_path}/hub.db"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1] == "cannot migrate to nope: Can't locate revision identified by 'nope'"
    )


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux's /sys (a directory nobody can write)")
def test_a_directory_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    embedded = run(["serve", "--port", str(free_port())], {}, cwd=Path("/sys"))
    assert embedded.returncode == 1 and embedded.stdout == ""
    assert (
        one_line(embedded) == "cannot write the dev-mode secrets /sys/cartsnitch-hub.db.secrets.json: Permission denied"
    )

    database = run(["migrate"], secret_env("sqlite:////sys/cartsnitch-hub-test.db"))
    assert database.returncode == 1
    assert one_line(database) == (
        "cannot use the database sqlite+aiosqlite:////sys/cartsnitch-hub-test.db: "
        "Permission denied: /sys/cartsnitch-hub-test.db"
    )


def test_a_corrupt_secrets_file_is_named(tmp_path: Path) -> None:
    secrets_file = tmp_path / "cartsnitch-hub.db.secrets.json"
    secrets_file.write_text("garbage")
    for args in (["serve", "--port", str(free_port())], PUBLISH):
        result = run(args, {}, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert one_line(result).startswith(f"{secrets_file} is not a dev-mode secrets file")
        assert result.stdout == ""
    assert secrets_file.read_text() == "garbage"


def test_publish_through_a_redis_that_is_down_is_one_line_and_needs_no_secrets() -> None:
    result = run(PUBLISH, {"CARTSNITCH_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"})
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("cannot publish through Redis at redis://:***@127.0.0.1:"), line
    assert PASSWORD not in line


@pytest.mark.redis
def test_publish_through_redis_needs_no_secrets(redis_url: str) -> None:
    result = run(PUBLISH, {"CARTSNITCH_REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_publish_to_something_that_is_not_the_hub_is_one_line(tmp_path: Path) -> None:
    with http_stub(501, b"<html><body>Not Implemented</body></html>", "text/html") as (port, _):
        url = f"http://127.0.0.1:{port}"
        result = run([*PUBLISH, "--url", url], {"CARTSNITCH_SERVICE_KEY": "k" * 40}, cwd=tmp_path)
    assert result.returncode == 1
    assert one_line(result) == f"the server at {url} answered 501 without a JSON object: is it the hub?"
    assert list(tmp_path.iterdir()) == []


def test_publish_goes_to_the_address_serve_listens_on(tmp_path: Path) -> None:
    key = secrets.token_urlsafe(32)
    with http_stub(202, orjson.dumps({"id": "evt-1"}), "application/json") as (port, seen):
        env = {"CARTSNITCH_HOST": "0.0.0.0", "CARTSNITCH_PORT": str(port), "CARTSNITCH_SERVICE_KEY": key}
        result = run(PUBLISH, env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "evt-1\n"
    assert seen == [("/internal/events", key)]


def test_publish_and_token_create_no_secrets_and_no_database(tmp_path: Path) -> None:
    publish = run(PUBLISH, {}, cwd=tmp_path)
    assert publish.returncode == 2
    assert one_line(publish).startswith(
        "no service key to publish through the hub's internal API: set CARTSNITCH_SERVICE_KEY"
    )

    token = run(["token", "u1"], {}, cwd=tmp_path)
    assert token.returncode == 1
    assert one_line(token) == (
        f"no database at {tmp_path}/cartsnitch-hub.db: run `cartsnitch-hub migrate` first "
        "(or start `cartsnitch-hub serve`)"
    )
    assert list(tmp_path.iterdir()) == []


def test_token_on_a_database_without_the_schema_says_to_migrate(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    result = run(["token", "u1"], secret_env(f"sqlite:///{empty}"))
    assert result.returncode == 1
    assert one_line(result) == "the database has no CartSnitch Hub schema: run `cartsnitch-hub migrate` first"


def test_token_in_dev_mode_without_secrets_says_so(sqlite_url: str, tmp_path: Path) -> None:
    result = run(["token", "u1"], {"CARTSNITCH_DATABASE_URL": sqlite_url, "CARTSNITCH_DEV_MODE": "true"})
    assert result.returncode == 2
    assert one_line(result).startswith("no JWT secret to sign with: set CARTSNITCH_JWT_SECRET_KEY")
    assert not (tmp_path / "hub.db.secrets.json").exists()


def test_serve_on_a_port_it_cannot_bind_prints_no_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        busy = run(["serve", "--port", str(port)], {}, cwd=tmp_path, timeout=30)
    assert busy.returncode == 1
    assert busy.stdout == ""
    assert one_line(busy) == f"cannot listen on 127.0.0.1:{port}: Address already in use"

    foreign = run(["serve", "--host", "203.0.113.7", "--port", str(port)], {}, cwd=tmp_path, timeout=30)
    assert foreign.returncode == 1
    assert foreign.stdout == ""
    assert one_line(foreign) == f"cannot listen on 203.0.113.7:{port}: Cannot assign requested address"
