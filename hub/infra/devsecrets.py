"""Dev-mode secrets: generated once and kept in a file beside the SQLite database (never in the repository)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

from hub.settings import Settings

_USED = ("jwt_secret_key", "service_key", "fernet_key")
"""The settings a secrets file fills when the environment leaves them empty."""


class DevSecretsError(Exception):
    """The secrets file cannot be read, is not one this module wrote, or cannot be written; the message names the
    file and the reason in one line."""


def secrets_path(settings: Settings) -> Path:
    database = settings.database_url.split("///", 1)[-1] if settings.is_sqlite else "cartsnitch-hub.db"
    base = Path(database if database and database != ":memory:" else "cartsnitch-hub.db")
    return base.with_name(base.name + ".secrets.json")


def _fernet_key() -> str:
    key: bytes = Fernet.generate_key()
    return key.decode()


def load_or_create(settings: Settings) -> tuple[Settings, dict[str, str]]:
    """Fill the secrets dev mode leaves empty from the secrets file, creating it (mode 0600) on first use."""
    path = secrets_path(settings)
    stored = _read(path)
    wanted: dict[str, Callable[[], str]] = {
        "jwt_secret_key": lambda: secrets.token_urlsafe(48),
        "service_key": lambda: secrets.token_urlsafe(32),
        "fernet_key": _fernet_key,
        "demo_password": lambda: secrets.token_urlsafe(9),
    }
    changed = False
    for name, make in wanted.items():
        if name not in stored:
            stored[name] = make()
            changed = True
    if changed:
        _write(path, stored)
    return _filled(settings, stored), stored


def load_existing(settings: Settings) -> Settings:
    """Fill the secrets dev mode leaves empty from the secrets file when there is one; never create it.

    For the commands that talk to a hub someone started (``publish``, ``token``): keys made up here would match
    nothing that hub knows."""
    return _filled(settings, _read(secrets_path(settings)))


def _filled(settings: Settings, stored: dict[str, str]) -> Settings:
    overrides = {name: stored[name] for name in _USED if name in stored and not getattr(settings, name)}
    return settings.with_overrides(**overrides)


def _read(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise DevSecretsError(f"cannot read the dev-mode secrets {path.absolute()}: {_reason(exc)}") from None
    try:
        stored = json.loads(text)
    except ValueError:
        stored = None
    if not isinstance(stored, dict) or not all(isinstance(value, str) for value in stored.values()):
        raise DevSecretsError(
            f"{path.absolute()} is not a dev-mode secrets file (a JSON object of strings): fix it, or remove it to "
            "have every dev secret generated anew"
        )
    return stored


def _write(path: Path, stored: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle, indent=2)
    except OSError as exc:
        raise DevSecretsError(f"cannot write the dev-mode secrets {path.absolute()}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
