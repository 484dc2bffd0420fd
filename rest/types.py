"""Field types shared by the response models."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer, WithJsonSchema

Money = Annotated[
    Decimal,
    PlainSerializer(lambda value: float(value), return_type=float, when_used="always"),
    WithJsonSchema({"type": "number"}, mode="serialization"),
]
"""An amount held as Decimal and written as a JSON number (the contract: money is a number)."""
