"""Field types shared by the request and response models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, PlainSerializer, WithJsonSchema
from pydantic_core import core_schema

Money = Annotated[
    Decimal,
    PlainSerializer(lambda value: float(value), return_type=float, when_used="always"),
    WithJsonSchema({"type": "number"}, mode="serialization"),
]
"""An amount (or any decimal) held as Decimal and written as a JSON number (the contract: money is a number)."""


def _number(value: Any) -> Decimal:
    """JSON numbers only, as the schema says: no strings, no booleans."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number")
    return Decimal(str(value))


@dataclass(frozen=True, slots=True)
class DecimalIn:
    """A request number between ``minimum`` and ``maximum``, rounded half-up to ``places`` (e.g. "0.01") once the
    bounds have held on the exact value: ``Annotated[Decimal, DecimalIn("0.01", "100", "0.01")]``."""

    minimum: str
    maximum: str
    places: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        step = Decimal(self.places)
        return core_schema.no_info_before_validator_function(
            _number,
            core_schema.no_info_after_validator_function(
                lambda value: value.quantize(step, rounding=ROUND_HALF_UP),
                core_schema.decimal_schema(ge=Decimal(self.minimum), le=Decimal(self.maximum)),
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {"type": "number", "minimum": float(self.minimum), "maximum": float(self.maximum)}


LOCAL_MIDNIGHT_PATTERN = r"^\d{4}-\d{2}-\d{2}T00:00:00$"


def local_midnight(value: date) -> str:
    return f"{value.isoformat()}T00:00:00"


LocalMidnight = Annotated[
    date,
    PlainSerializer(local_midnight, return_type=str, when_used="always"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": LOCAL_MIDNIGHT_PATTERN,
            "description": "a calendar date written as local midnight (YYYY-MM-DDT00:00:00, no offset)",
        },
        mode="serialization",
    ),
]
"""A DATE column the old gateway typed as a timestamp, written as it wrote it: ``YYYY-MM-DDT00:00:00`` with no
offset. A browser reads that as midnight of the same day in its own time zone; a bare ``YYYY-MM-DD`` reads as
UTC midnight, which is the previous evening in the Americas."""

Timestamp = Annotated[
    datetime,
    WithJsonSchema(
        {
            "type": "string",
            "anyOf": [{"format": "date-time"}, {"pattern": LOCAL_MIDNIGHT_PATTERN}],
            "description": "an instant with its offset, or for a date-backed value local midnight with none",
        },
        mode="serialization",
    ),
]
"""A timestamp field that mixes instants (written with their offset) and date-backed values (naive local
midnight, see ``LocalMidnight``)."""
