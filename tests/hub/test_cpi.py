from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

import hub
from hub.domain import cpi

CPI_DIR = Path(hub.__file__).parent / "data" / "cpi"
NATIONAL = [sid for sid in cpi.SERIES_INFO if sid.startswith("CUUR0000")]


def _read_csv(series_id: str) -> dict[str, Decimal]:
    with (CPI_DIR / f"{series_id}.csv").open(newline="", encoding="utf-8") as handle:
        return {f"{row['year']}-{row['period'][1:]}": Decimal(row["value"]) for row in csv.DictReader(handle)}


def test_every_shipped_series_loads_with_the_csv_values() -> None:
    assert {path.stem for path in CPI_DIR.glob("*.csv")} == set(cpi.SERIES_INFO)
    for series_id in cpi.SERIES_INFO:
        series = cpi.series(series_id)
        expected = _read_csv(series_id)
        assert {cpi.month_label(m): v for m, v in series.levels.items()} == expected
        assert series.title == cpi.SERIES_INFO[series_id][0]


def test_national_series_cover_2015_to_may_2026_without_october_2025() -> None:
    for series_id in NATIONAL:
        series = cpi.series(series_id)
        assert cpi.month_label(series.first_month) == "2015-01"
        assert cpi.month_label(series.last_month) == "2026-05"
        assert len(series.levels) == 136
        assert [cpi.month_label(m) for m in series.missing_months] == ["2025-10"]
        assert series.level(cpi.month_index(2025, 10)) is None
        assert series.level(cpi.month_index(2026, 6)) is None


def test_food_at_home_values_match_published_levels() -> None:
    food = cpi.series("CUUR0000SAF11")
    assert food.level(cpi.month_index(2015, 1)) == Decimal("243.123")
    assert food.level(cpi.month_index(2026, 5)) == Decimal("321.047")
    assert food.area == "U.S. city average"


def test_midwest_series_keeps_its_long_gaps() -> None:
    midwest = cpi.series("CUUR0200SAF11")
    assert len(midwest.levels) == 113
    assert len(midwest.missing_months) == 24
    assert midwest.area == "Midwest region"


@pytest.mark.parametrize(
    ("category", "series_id", "own"),
    [
        (None, "CUUR0000SAF11", True),
        ("bakery", "CUUR0000SAF111", True),
        ("meat", "CUUR0000SAF112", True),
        ("produce", "CUUR0000SAF113", True),
        ("beverages", "CUUR0000SAF114", True),
        ("dairy", "CUUR0000SEFJ", True),
        ("frozen", "CUUR0000SAF11", False),
        ("household", "CUUR0000SAF11", False),
    ],
)
def test_category_series(category: str | None, series_id: str, own: bool) -> None:
    series, matches = cpi.series_for_category(category)
    assert series.series_id == series_id
    assert matches is own


def test_series_are_loaded_once() -> None:
    assert cpi.all_series() is cpi.all_series()


def test_month_helpers() -> None:
    march = cpi.month_of(date(2026, 3, 31))
    assert cpi.month_label(march) == "2026-03"
    assert cpi.month_label(march - 3) == "2025-12"
    assert cpi.month_start(march + 10) == date(2027, 1, 1)


GOOD = "series_id,year,period,value\nCUUR0000SA0,2020,M01,100.000\nCUUR0000SA0,2020,M02,101.500\n"


@pytest.mark.parametrize(
    "text",
    [
        "id,year,period,value\nCUUR0000SA0,2020,M01,100.000\n",
        "series_id,year,period,value\nCUUR0000SAF11,2020,M01,100.000\n",
        "series_id,year,period,value\nCUUR0000SA0,2020,M13,100.000\n",
        "series_id,year,period,value\nCUUR0000SA0,2020,M01,100.5\n",
        "series_id,year,period,value\nCUUR0000SA0,2020,M01,0.000\n",
        "series_id,year,period,value\nCUUR0000SA0,2020,M02,100.000\nCUUR0000SA0,2020,M01,100.000\n",
        "series_id,year,period,value\nCUUR0000SA0,2020,M01,100.000\nCUUR0000SA0,2020,M01,100.000\n",
        "series_id,year,period,value\nCUUR0000SA0,20x0,M01,100.000\n",
        "series_id,year,period,value\nCUUR0000SA0,2020,M01\n",
        "series_id,year,period,value\n",
    ],
)
def test_malformed_files_are_refused(text: str) -> None:
    with pytest.raises(cpi.CPIDataError):
        cpi.parse_series("CUUR0000SA0", text)


def test_a_well_formed_file_parses() -> None:
    series = cpi.parse_series("CUUR0000SA0", GOOD)
    assert series.level(cpi.month_index(2020, 2)) == Decimal("101.500")
    with pytest.raises(cpi.CPIDataError):
        cpi.parse_series("CUUR9999XXX", GOOD)
