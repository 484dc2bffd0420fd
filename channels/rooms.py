"""Namespace and room names: built and parsed only here."""

from __future__ import annotations

import re

USER_NAMESPACE_PREFIX = "/users/"
PUBLIC_NAMESPACE = "/public"
INFLATION = "inflation"
STORE_COMPARISON = "store-comparison"
TREND_PREFIX = "trend:"

_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_valid_id(value: object) -> bool:
    """True for an opaque id made of URL-safe characters (letters, digits, ``-``, ``_``)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def user_namespace(user_id: str) -> str:
    """The Socket.IO namespace of one user."""
    return USER_NAMESPACE_PREFIX + user_id


def parse_user_namespace(namespace: str) -> str | None:
    """The user id of a ``/users/{user_id}`` namespace, or None when the name is not one."""
    if not namespace.startswith(USER_NAMESPACE_PREFIX):
        return None
    user_id = namespace[len(USER_NAMESPACE_PREFIX) :]
    return user_id if is_valid_id(user_id) else None


def trend(product_id: str) -> str:
    """The public room that carries one product's price movements."""
    return TREND_PREFIX + product_id


def parse_public_room(room: object) -> str | None:
    """The room name when ``room`` names a public room (``trend:<id>``, ``inflation``, ``store-comparison``)."""
    if not isinstance(room, str):
        return None
    if room in (INFLATION, STORE_COMPARISON):
        return room
    if room.startswith(TREND_PREFIX) and is_valid_id(room[len(TREND_PREFIX) :]):
        return room
    return None


def trend_product(room: str) -> str | None:
    """The product id of a ``trend:<id>`` room."""
    return room[len(TREND_PREFIX) :] if room.startswith(TREND_PREFIX) else None
