"""Root conftest: makes the shared `testsupport` package importable from every test layer; runs the kind layer last."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the kind layer last: its cluster (a node container with a whole control plane) starts at its first test
    and would otherwise load the 2-core machine under the timing-sensitive pipeline tests collected after it."""
    items.sort(key=lambda item: item.get_closest_marker("kind") is not None)
