from __future__ import annotations

import secrets
from dataclasses import fields

import pytest
from cryptography.fernet import Fernet

from hub.infra.cluster import is_cluster_url, parse_cluster_url
from hub.settings import DEFAULT_DATABASE_URL, Settings, SettingsError, is_placeholder, setting_names

STRONG = "k3P9x-2vQ8_mZ7rT1wY6uB4nH5jL0sDfGaQpWeRtYu"
_SECRETS = {
    "CARTSNITCH_JWT_SECRET_KEY": STRONG,
    "CARTSNITCH_SERVICE_KEY": STRONG[::-1],
    "CARTSNITCH_FERNET_KEY": Fernet.generate_key().decode(),
}


def test_defaults_run_the_embedded_default() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.redis_url is None
    assert settings.dev_mode is True
    assert settings.seed_demo_data is True
    assert settings.demo_sync is True
    assert settings.port == 8000
    assert settings.rate_limit_requests == 60 and settings.rate_limit_window_seconds == 60
    assert settings.rate_limit_auth_requests == 5 and settings.rate_limit_auth_window_seconds == 60
    assert settings.jwt_algorithm == "HS256"
    assert settings.jwt_access_token_expire_minutes == 15 and settings.jwt_refresh_token_expire_days == 7
    assert settings.cors_origins == ("https://cartsnitch.com", "http://localhost:3000", "http://localhost:5173")


def test_gateway_names_are_accepted_and_postgres_urls_normalised() -> None:
    env = {
        "DATABASE_URL": "postgresql://u:p@db:5432/cartsnitch",
        "REDIS_URL": "redis://cache:6379/0",
        "CARTSNITCH_JWT_SECRET_KEY": STRONG,
        "CARTSNITCH_SERVICE_KEY": STRONG[::-1],
        "CARTSNITCH_FERNET_KEY": Fernet.generate_key().decode(),
        "CARTSNITCH_CORS_ORIGINS": '["https://app.example.com"]',
        "CARTSNITCH_RATE_LIMIT_REQUESTS": "120",
    }
    settings = Settings.from_env(env)
    assert settings.database_url == "postgresql+asyncpg://u:p@db:5432/cartsnitch"
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.dev_mode is False
    assert settings.seed_demo_data is False
    assert settings.cors_origins == ("https://app.example.com",)
    assert settings.rate_limit_requests == 120


def test_prefixed_name_wins_over_the_bare_one() -> None:
    env = {"CARTSNITCH_DATABASE_URL": "sqlite:///a.db", "DATABASE_URL": "sqlite:///b.db", "CARTSNITCH_DEV_MODE": "1"}
    assert Settings.from_env(env).database_url == "sqlite+aiosqlite:///a.db"


def test_every_problem_is_reported_together() -> None:
    env = {
        "DATABASE_URL": "postgresql://db/x",
        "CARTSNITCH_JWT_SECRET_KEY": "change-me",
        "CARTSNITCH_RATE_LIMIT_ENABLED": "maybe",
        "CARTSNITCH_JWT_ALGORITHM": "none",
        "CARTSNITCH_PORT": "70000",
        "CARTSNITCH_FERNET_KEY": "not-a-key",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    text = "\n".join(caught.value.problems)
    for name in (
        "CARTSNITCH_RATE_LIMIT_ENABLED",
        "CARTSNITCH_JWT_ALGORITHM",
        "CARTSNITCH_PORT",
        "CARTSNITCH_JWT_SECRET_KEY",
        "CARTSNITCH_SERVICE_KEY",
        "CARTSNITCH_FERNET_KEY",
    ):
        assert name in text
    assert len(caught.value.problems) >= 6


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "change-me-in-production",
        "secret",
        "x" * 40,
        "short-but-random-9Qz",
        "this-is-my-dev-jwt-secret-change-me-in-production",
        "your-super-secret-jwt-key-goes-here-1234567890",
    ],
)
def test_placeholder_secrets_are_refused_outside_dev_mode(secret: str) -> None:
    assert is_placeholder(secret)
    env = {
        "REDIS_URL": "redis://r:6379",
        "CARTSNITCH_JWT_SECRET_KEY": secret,
        "CARTSNITCH_SERVICE_KEY": STRONG,
        "CARTSNITCH_FERNET_KEY": Fernet.generate_key().decode(),
    }
    with pytest.raises(SettingsError, match="CARTSNITCH_JWT_SECRET_KEY"):
        Settings.from_env(env)


@pytest.mark.parametrize("word", ["dev", "xxx", "test", "your"])
def test_a_random_secret_containing_a_placeholder_word_is_accepted(word: str) -> None:
    # token_urlsafe(48) contains one of these words in about 1 of 300 draws; CI once drew one.
    secret = secrets.token_urlsafe(30) + word + secrets.token_urlsafe(18)
    assert not is_placeholder(secret)


def test_dev_mode_accepts_a_missing_secret() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://db/x", "CARTSNITCH_DEV_MODE": "true"})
    assert settings.dev_mode is True and settings.jwt_secret_key == ""


def test_secrets_do_not_appear_in_repr() -> None:
    settings = Settings(jwt_secret_key=STRONG, service_key="svc-" + STRONG, fernet_key="fernet-" + STRONG)
    text = repr(settings)
    assert STRONG not in text


def test_every_env_source_names_a_settings_field() -> None:
    assert set(setting_names()) <= {f.name for f in fields(Settings)}


def test_the_demo_ticker_runs_only_in_the_embedded_default_unless_asked() -> None:
    assert Settings.from_env({}).demo_ticker_seconds == 5
    assert Settings.from_env({"CARTSNITCH_DEMO_TICKER_SECONDS": "0"}).demo_ticker_seconds == 0
    assert Settings.from_env({"CARTSNITCH_DEMO_TICKER_SECONDS": "1.5"}).demo_ticker_seconds == 1.5
    assert Settings.from_env({"CARTSNITCH_DEV_MODE": "false", **_SECRETS}).demo_ticker_seconds == 0
    postgres = {"CARTSNITCH_DATABASE_URL": "postgresql://u@db/c", **_SECRETS}
    assert Settings.from_env(postgres).demo_ticker_seconds == 0
    assert Settings.from_env({**postgres, "CARTSNITCH_DEV_MODE": "true"}).demo_ticker_seconds == 0


@pytest.mark.parametrize("raw", ["-1", "0.01", "nan", "inf", "fast"])
def test_a_bad_demo_ticker_interval_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match="CARTSNITCH_DEMO_TICKER_SECONDS"):
        Settings.from_env({"CARTSNITCH_DEMO_TICKER_SECONDS": raw})


@pytest.mark.parametrize("raw", ["2", "0", "-5", "soon"])
def test_a_claim_delay_under_five_seconds_is_refused(raw: str) -> None:
    """Under the 2 s retry of a process's own kept events, another process would take them from it."""
    with pytest.raises(SettingsError, match="CARTSNITCH_INGEST_CLAIM_SECONDS"):
        Settings.from_env({"CARTSNITCH_INGEST_CLAIM_SECONDS": raw})
    assert Settings.from_env({"CARTSNITCH_INGEST_CLAIM_SECONDS": "7.5"}).ingest_claim_seconds == 7.5


def test_the_demo_ticker_is_refused_outside_dev_mode() -> None:
    env = {"CARTSNITCH_DATABASE_URL": "postgresql://u@db/c", "CARTSNITCH_DEMO_TICKER_SECONDS": "5", **_SECRETS}
    with pytest.raises(SettingsError, match="CARTSNITCH_DEMO_TICKER_SECONDS: only in dev mode"):
        Settings.from_env(env)


def test_a_redis_cluster_is_named_by_some_of_its_nodes() -> None:
    url = "redis+cluster://hub:s%40cret@10.0.0.1:7000,10.0.0.2:7001/"
    settings = Settings.from_env({"CARTSNITCH_REDIS_URL": url, **_SECRETS})
    assert settings.redis_url == url
    address = parse_cluster_url(url)
    assert address.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (address.username, address.password, address.tls) == ("hub", "s@cret", False)
    assert address.node_url("10.0.0.3", 7002) == "redis://hub:s%40cret@10.0.0.3:7002/0"
    tls = parse_cluster_url("rediss+cluster://:pw@[::1]:7000")
    assert tls.nodes == (("::1", 7000),) and tls.tls and tls.username is None and tls.password == "pw"
    assert is_cluster_url(url) and not is_cluster_url("redis://r:6379/0") and not is_cluster_url(None)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://10.0.0.1:7000/1", "only database 0"),
        ("redis+cluster://10.0.0.1/", "not host:port"),
        ("redis+cluster://10.0.0.1:7000,,10.0.0.2:7001/", "not host:port"),
        ("redis+sentinel://s:26379/0", "redis\\+cluster://host:port"),
    ],
)
def test_a_bad_cluster_url_is_refused(url: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=f"CARTSNITCH_REDIS_URL: .*{problem}"):
        Settings.from_env({"CARTSNITCH_REDIS_URL": url, **_SECRETS})


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    """A row names a variable in full or, after a sibling, by its suffix (`CARTSNITCH_RATE_LIMIT_REQUESTS` /
    `_WINDOW_SECONDS`); a setting read from the environment and documented nowhere is one nobody can find."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = text[text.index("## Configuration") : text.index("## Architecture")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]

    def documented(name: str) -> bool:
        if f"`{name}`" in table:
            return True
        cuts = [i for i, char in enumerate(name) if char == "_" and i >= len("CARTSNITCH")]
        return any(f"`{name[i:]}`" in row and f"`{name[:i]}" in row for i in cuts for row in rows)

    assert [names[0] for names in setting_names().values() if not documented(names[0])] == []


@pytest.mark.parametrize(
    ("name", "raw", "problem"),
    [
        ("CARTSNITCH_CORS_ORIGINS", '{"a": 1}', "must be a JSON list of origins (or origins separated by commas)"),
        ("CARTSNITCH_CORS_ORIGINS", "[not json", "must be a JSON list of origins"),
        ("CARTSNITCH_CORS_ORIGINS", "not json", "'not json' is not an origin (scheme://host[:port], http or https)"),
        ("CARTSNITCH_CORS_ORIGINS", '["https://app.example/path"]', "'https://app.example/path' is not an origin"),
        ("CARTSNITCH_CORS_ORIGINS", "ftp://files.example", "'ftp://files.example' is not an origin"),
        ("CARTSNITCH_TRUSTED_PROXIES", "[1]", "must be a JSON list of CIDRs"),
        ("CARTSNITCH_SUPPORTED_STORES", "[1, 2]", "must be a JSON list of store slugs"),
        ("CARTSNITCH_PORT", "abc", "must be a whole number between 1 and 65535"),
        ("CARTSNITCH_PORT", "1e3", "must be a whole number between 1 and 65535"),
        ("CARTSNITCH_UPSTREAM_TIMEOUT_SECONDS", "soon", "must be a number"),
    ],
)
def test_a_bad_list_or_number_is_named_in_the_settings_words(name: str, raw: str, problem: str) -> None:
    """The problem names what the setting holds, never a Python parser's message."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: raw})
    [reported] = caught.value.problems
    assert reported.startswith(f"{name}: {problem}")
    assert "literal" not in reported and "Expecting" not in reported


def test_origins_and_store_lists_are_read_as_json_or_commas() -> None:
    env = {
        "CARTSNITCH_CORS_ORIGINS": "https://app.example, http://localhost:5173/",
        "CARTSNITCH_SUPPORTED_STORES": '["kroger", "meijer"]',
    }
    settings = Settings.from_env(env)
    assert settings.cors_origins == ("https://app.example", "http://localhost:5173/")
    assert settings.supported_stores == ("kroger", "meijer")


def test_a_command_is_asked_only_for_the_secrets_it_uses() -> None:
    """Publishing through Redis signs nothing and encrypts nothing; serving needs every secret."""
    env = {"CARTSNITCH_REDIS_URL": "redis://cache:6379/0"}
    assert Settings.from_env(env, needs=()).jwt_secret_key == ""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env, needs=("jwt_secret_key",))
    assert caught.value.problems == ["CARTSNITCH_JWT_SECRET_KEY: required outside dev mode"]
    with pytest.raises(SettingsError, match="placeholder"):
        Settings.from_env({**env, "CARTSNITCH_SERVICE_KEY": "change-me"}, needs=())
