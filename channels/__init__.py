"""The CartSnitch event catalog: wire names, payload schemas, room and Redis names, publish helpers.

A leaf package: other services import it to publish events; it imports nothing from ``hub`` or ``rest``.
"""

from channels.errors import Problem, ProblemType
from channels.events import AUDIENCE, Audience, EventType
from channels.payloads import InvalidPayload, validate_payload

__all__ = [
    "AUDIENCE",
    "Audience",
    "EventType",
    "InvalidPayload",
    "Problem",
    "ProblemType",
    "validate_payload",
]
