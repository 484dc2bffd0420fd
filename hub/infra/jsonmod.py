"""A json module for python-socketio backed by orjson (``dumps`` returns ``str`` as socketio expects)."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def loads(data: str | bytes, **_: Any) -> Any:
    return orjson.loads(data)
