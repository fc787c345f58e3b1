"""Exporter test fixtures.

`--update-golden` rewrites the golden exposition files under exporter/tests/golden/ instead of
comparing against them. pytest loads this conftest at startup when the exporter tests are
collected (from the repo root via testpaths, or by naming this directory), so the option is
registered in time.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test helpers live beside this file (`exporter_testlib`); --import-mode=importlib does not put
# test directories on sys.path by itself.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from exporter_testlib import FakeKubecost, serve_fake


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite exporter golden exposition files instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def kubecost() -> Iterator[FakeKubecost]:
    """A real HTTP server on 127.0.0.1 answering like the Kubecost/OpenCost Allocation API."""
    with serve_fake() as fake:
        yield fake
