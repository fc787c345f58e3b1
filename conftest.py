"""Root conftest: makes the shared `testsupport` package importable from every test layer; runs the kind layer last."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


#: Directories whose tests share session-scoped benches (a control plane, Thanos stacks, a kind cluster).
SHARED_BENCHES = ("tests-e2e/controlplane", "tests-e2e/operations", "tests-e2e/kind")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the kind layer last: its cluster (a node container with a whole control plane) starts at its first test
    and would otherwise load the 2-core machine under the timing-sensitive pipeline tests collected after it.

    Under pytest-xdist (`make test` runs the layers other than kind on two workers, `--dist loadgroup`), the tests of
    a shared bench form one group, and each other end-to-end file one group (module-scoped stacks), so no bench is
    started twice; unit and chart tests spread freely. Without xdist the groups change nothing."""
    for item in items:
        rel = item.path.relative_to(ROOT).as_posix()
        group = next((d for d in SHARED_BENCHES if rel.startswith(d + "/")), None)
        if group is None and rel.startswith("tests-e2e/"):
            group = rel
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: item.get_closest_marker("kind") is not None)
