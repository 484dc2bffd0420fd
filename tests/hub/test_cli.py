"""The cartsnitch-hub command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from alembic.script import ScriptDirectory

from hub.settings import Settings
from hub.store.engine import build_engine, build_sessionmaker
from hub.store.migrate import alembic_config
from tests import factories
from tests.conftest import make_settings


def run(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CARTSNITCH_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    env = {
        "CARTSNITCH_DATABASE_URL": settings.database_url,
        "CARTSNITCH_DEV_MODE": "false",
        "CARTSNITCH_JWT_SECRET_KEY": settings.jwt_secret_key,
        "CARTSNITCH_SERVICE_KEY": settings.service_key or "",
        "CARTSNITCH_FERNET_KEY": settings.fernet_key or "",
    }
    if settings.redis_url:
        env["CARTSNITCH_REDIS_URL"] = settings.redis_url
    return env


async def test_token_prints_one_token_per_user_in_order(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url)
    engine = build_engine(sqlite_url)
    try:
        async with build_sessionmaker(engine).begin() as session:
            first = await factories.create_user(session)
            second = await factories.create_user(session)
    finally:
        await engine.dispose()
    result = run(["token", "--ttl", "120", "--", second.id, first.id], settings_env(settings))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    claims = [jwt.decode(line, settings.jwt_secret_key, algorithms=["HS256"]) for line in lines]
    assert [c["sub"] for c in claims] == [second.id, first.id]
    assert all(c["type"] == "access" and c["exp"] - c["iat"] == 120 for c in claims)

    unknown = run(["token", "--", first.id, "ghost-user"], settings_env(settings))
    assert unknown.returncode == 2
    assert "ghost-user" in unknown.stderr
    assert unknown.stdout == ""


def test_publish_refuses_an_invalid_payload(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url)
    bad_json = run(["publish", "cartsnitch.sync.progress", "--payload", "{nope"], settings_env(settings))
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    invalid = run(["publish", "cartsnitch.sync.progress", "--payload", '{"user_id": "u1"}'], settings_env(settings))
    assert invalid.returncode == 2
    assert "status" in invalid.stderr and "job_id" in invalid.stderr
    unknown = run(["publish", "cartsnitch.unknown", "--payload", "{}"], settings_env(settings))
    assert unknown.returncode == 2


def test_publish_without_a_reachable_hub_says_so(sqlite_url: str) -> None:
    from tests.services import free_port

    settings = make_settings(sqlite_url)
    result = run(
        [
            "publish",
            "cartsnitch.sync.progress",
            "--url",
            f"http://127.0.0.1:{free_port()}",
            "--payload",
            '{"user_id": "u1", "store_slug": "kroger", "job_id": "j", "status": "queued"}',
        ],
        settings_env(settings),
    )
    assert result.returncode == 1
    assert "cannot reach the hub" in result.stderr


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/new.db")
    result = run(["migrate"], settings_env(settings))
    assert result.returncode == 0, result.stderr
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None and f"database at revision {head}" in result.stdout


def test_invalid_settings_are_listed_and_refused(tmp_path: Path) -> None:
    result = run(
        ["migrate"], {"CARTSNITCH_DATABASE_URL": "mysql://nope", "CARTSNITCH_PORT": "0", "CARTSNITCH_DEV_MODE": "maybe"}
    )
    assert result.returncode == 2
    for name in ("CARTSNITCH_DATABASE_URL", "CARTSNITCH_PORT", "CARTSNITCH_DEV_MODE"):
        assert name in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["seed", "--users", "-1"],
        ["nope"],
        [],
        ["serve", "--port", "-1"],
        ["serve", "--port", "65536"],
        ["token", "--ttl", "-60", "u1"],
    ],
)
def test_bad_arguments_exit_2(args: list[str], tmp_path: Path) -> None:
    result = run(args, {"CARTSNITCH_DEV_MODE": "true"}, cwd=tmp_path, timeout=20)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "0"], "argument --port: must be between 1 and 65535"),
        (["serve", "--port", "http"], "argument --port: 'http' is not a whole number"),
        (["seed", "--users", "abc"], "argument --users: 'abc' is not a whole number"),
        (["token", "--ttl", "0", "u1"], "argument --ttl: must be at least 1"),
    ],
)
def test_argument_errors_read_as_sentences(args: list[str], message: str, tmp_path: Path) -> None:
    result = run(args, {}, cwd=tmp_path, timeout=20)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(message)


def test_help_is_plain_text_and_covers_every_option(tmp_path: Path) -> None:
    top = run(["--help"], {}, cwd=tmp_path)
    assert top.returncode == 0
    assert "``" not in top.stdout and "CartSnitch Hub" in top.stdout
    migrate = run(["migrate", "--help"], {}, cwd=tmp_path)
    assert "--revision REVISION  the Alembic revision to upgrade to" in migrate.stdout


def test_seed_refuses_a_database_with_data(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/seeded.db")
    sizes = ["--users", "3", "--products", "20", "--price-rows", "200", "--purchases", "5"]
    first = run(["seed", *sizes], settings_env(settings))
    assert first.returncode == 0, first.stderr
    again = run(["seed", *sizes], settings_env(settings))
    assert again.returncode == 2
    assert "cannot seed" in again.stderr and "Traceback" not in again.stderr


def test_the_seed_help_states_the_demo_size_it_falls_back_to() -> None:
    """The parser does not import the data layer for its defaults (a second off every command): the help says
    them, and says what ``SeedSize.demo()`` holds."""
    from hub.cli import build_parser
    from hub.store.seed import SeedSize

    parser = build_parser()
    [seed] = [action.choices["seed"] for action in parser._subparsers._group_actions]  # type: ignore[union-attr]
    text = " ".join(seed.format_help().split())
    demo = SeedSize.demo()
    for option, value in (
        ("--users", demo.users),
        ("--products", demo.products),
        ("--price-rows", demo.price_rows),
        ("--purchases", demo.purchases),
    ):
        assert f"{option} {option.lstrip('-').replace('-', '_').upper()} (default" in text
        assert f"{value})" in text
    assert f"default {demo.seed})" in text
