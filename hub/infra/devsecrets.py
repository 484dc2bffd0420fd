"""Dev-mode secrets: generated once and kept in a file beside the SQLite database (never in the repository)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

from hub.settings import Settings


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
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
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
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle, indent=2)
    overrides = {
        name: stored[name] for name in ("jwt_secret_key", "service_key", "fernet_key") if not getattr(settings, name)
    }
    return settings.with_overrides(**overrides), stored
