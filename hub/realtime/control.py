"""Control events: what the hub says to one connection (not part of any history, so without ``id``)."""

from __future__ import annotations

from typing import Any

from channels.events import ControlEvent
from channels.payloads import utc_timestamp


def control_envelope(event: ControlEvent, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_type": event.value, "timestamp": utc_timestamp(), "service": "hub", "payload": payload}
