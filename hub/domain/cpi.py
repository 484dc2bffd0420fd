"""The BLS CPI-U series shipped in ``hub/data/cpi`` (published index levels only; see SOURCES.md there).

The files are read once per process, validated, and never filled in: a month BLS did not publish (2025-10) or
has not published yet is simply absent, and every reader gets ``None`` for it.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from types import MappingProxyType

BASE = "1982-84=100"
SOURCE = "U.S. Bureau of Labor Statistics, CPI-U (see SOURCES.md)"
FOOD_AT_HOME = "CUUR0000SAF11"

SERIES_INFO: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "CUUR0000SA0": ("All items", "U.S. city average"),
        "CUUR0000SAF11": ("Food at home", "U.S. city average"),
        "CUUR0000SAF111": ("Cereals and bakery products", "U.S. city average"),
        "CUUR0000SAF112": ("Meats, poultry, fish, and eggs", "U.S. city average"),
        "CUUR0000SAF113": ("Fruits and vegetables", "U.S. city average"),
        "CUUR0000SAF114": ("Nonalcoholic beverages and beverage materials", "U.S. city average"),
        "CUUR0000SEFJ": ("Dairy and related products", "U.S. city average"),
        "CUUR0200SAF11": ("Food at home", "Midwest region"),
    }
)
"""Every shipped series: BLS title and area, as SOURCES.md lists them."""

CATEGORY_SERIES: Mapping[str, str] = MappingProxyType(
    {
        "bakery": "CUUR0000SAF111",
        "meat": "CUUR0000SAF112",
        "produce": "CUUR0000SAF113",
        "beverages": "CUUR0000SAF114",
        "dairy": "CUUR0000SEFJ",
    }
)
"""CartSnitch categories that have their own CPI-U subindex; every other category compares with Food at home."""

_HEADER = ["series_id", "year", "period", "value"]
_PERIOD = re.compile(r"^M(0[1-9]|1[0-2])$")
_VALUE = re.compile(r"^\d{1,4}\.\d{3}$")


class CPIDataError(ValueError):
    """A shipped CPI file does not have the shape SOURCES.md describes."""


def month_index(year: int, month: int) -> int:
    """Months since year 0: consecutive months differ by one."""
    return year * 12 + month - 1


def month_of(day: date) -> int:
    return month_index(day.year, day.month)


def month_label(index: int) -> str:
    """``YYYY-MM``."""
    year, month0 = divmod(index, 12)
    return f"{year:04d}-{month0 + 1:02d}"


def month_start(index: int) -> date:
    year, month0 = divmod(index, 12)
    return date(year, month0 + 1, 1)


@dataclass(frozen=True, slots=True)
class Series:
    series_id: str
    title: str
    area: str
    levels: Mapping[int, Decimal]

    @property
    def first_month(self) -> int:
        return min(self.levels)

    @property
    def last_month(self) -> int:
        return max(self.levels)

    @property
    def missing_months(self) -> tuple[int, ...]:
        """Months between the first and the last that BLS did not publish."""
        return tuple(m for m in range(self.first_month, self.last_month + 1) if m not in self.levels)

    def level(self, month: int) -> Decimal | None:
        return self.levels.get(month)


def parse_series(series_id: str, text: str) -> Series:
    """One CSV file (``series_id,year,period,value``) as a validated series."""
    if series_id not in SERIES_INFO:
        raise CPIDataError(f"{series_id}: not a series SOURCES.md lists")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != _HEADER:
        raise CPIDataError(f"{series_id}: header is {header}, expected {_HEADER}")
    levels: dict[int, Decimal] = {}
    previous = -1
    for line, row in enumerate(reader, start=2):
        if len(row) != len(_HEADER):
            raise CPIDataError(f"{series_id} line {line}: expected {len(_HEADER)} columns")
        sid, year, period, value = row
        if sid != series_id:
            raise CPIDataError(f"{series_id} line {line}: series id {sid!r}")
        if not year.isdigit() or not 1913 <= int(year) <= 2100:
            raise CPIDataError(f"{series_id} line {line}: year {year!r}")
        if not _PERIOD.match(period):
            raise CPIDataError(f"{series_id} line {line}: period {period!r} (only M01..M12)")
        if not _VALUE.match(value):
            raise CPIDataError(f"{series_id} line {line}: value {value!r} (three decimals expected)")
        try:
            level = Decimal(value)
        except InvalidOperation:
            raise CPIDataError(f"{series_id} line {line}: value {value!r}") from None
        if level <= 0:
            raise CPIDataError(f"{series_id} line {line}: value {value!r} is not positive")
        month = month_index(int(year), int(period[1:]))
        if month <= previous:
            raise CPIDataError(f"{series_id} line {line}: {year}-{period} is out of order or repeated")
        previous = month
        levels[month] = level
    if not levels:
        raise CPIDataError(f"{series_id}: no values")
    title, area = SERIES_INFO[series_id]
    return Series(series_id, title, area, MappingProxyType(levels))


@functools.cache
def all_series() -> Mapping[str, Series]:
    """Every shipped series, read from the package data once per process."""
    folder = resources.files("hub").joinpath("data").joinpath("cpi")
    loaded = {sid: parse_series(sid, folder.joinpath(f"{sid}.csv").read_text(encoding="utf-8")) for sid in SERIES_INFO}
    return MappingProxyType(loaded)


def series(series_id: str) -> Series:
    return all_series()[series_id]


def series_for_category(category: str | None) -> tuple[Series, bool]:
    """The series a category compares with, and whether it is the category's own subindex (False means the
    Food at home fallback for a category CPI-U has no matching subindex for)."""
    if category is None:
        return series(FOOD_AT_HOME), True
    own = CATEGORY_SERIES.get(category)
    return series(own or FOOD_AT_HOME), own is not None
