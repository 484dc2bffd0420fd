"""The load-test suite is run by hand, not by CI: these keep every benchmark startable (imports resolve, arguments
parse) when the code it borrows from the hub and the test helpers changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted(
    f"loadtest.{path.parent.name + '.' if path.parent.name == 'scenarios' else ''}{path.stem}"
    for path in [*ROOT.glob("loadtest/*.py"), *ROOT.glob("loadtest/scenarios/*.py")]
    if "__main__" in path.read_text()
)


def test_every_benchmark_is_found() -> None:
    assert "loadtest.compare" in SCENARIOS
    assert "loadtest.scenarios.faults" in SCENARIOS
    assert len(SCENARIOS) >= 9


@pytest.mark.parametrize("module", SCENARIOS)
def test_a_benchmark_starts_and_explains_its_arguments(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
