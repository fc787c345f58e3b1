"""Root conftest: makes the shared `testsupport` package importable from every test layer; runs the kind layer last."""

import sys
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]  # xdist ships no types

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


#: Directories whose tests share session-scoped benches (a control plane, Thanos stacks, a kind cluster).
SHARED_BENCHES = ("tests-e2e/controlplane/", "tests-e2e/operations/", "tests-e2e/kind/")
#: The longest units of work, started first in this order (measured, 3 workers: the control plane 4 min, the alert
#: rules' promtool runs and the write path's outages 3.5 min each, the operations bench 2.5 min; a chart file is
#: under 2 min). Under xdist a long unit started last keeps one worker busy alone at the end.
LONG_FIRST = ("tests-e2e/", "charts/kubecost-integration/tests/test_alerts.py")


def bench_scope(nodeid: str) -> str:
    """The unit of work of a test under pytest-xdist: its shared bench's directory, else its file."""
    path = nodeid.split("::", 1)[0]
    return next((d for d in SHARED_BENCHES if path.startswith(d)), path)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs the layers other than kind on three workers with `--dist loadscope`: the tests of one file, or
    of one shared bench directory, go to one worker, so no module- or session-scoped bench starts twice (two kwok
    control planes would also race for kwokctl's ports). pytest-xdist's own `loadgroup` marks cannot do this under
    pytest 9 (it renames `item._nodeid`, which `nodeid` no longer reads)."""
    if config.getvalue("dist") != "loadscope":
        return None
    # in the order of pytest_collection_modifyitems, not xdist's default (most tests first, which put the long
    # benches of a few tests each at the end: 10 min 41 s, against 9 min 19 s simulated in this order)
    config.option.loadscopereorder = False
    return BenchScopeScheduling(config, log)


class BenchScopeScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist's schedulers are untyped
    def _split_scope(self, nodeid: str) -> str:
        return bench_scope(nodeid)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the kind layer last: its cluster (a node container with a whole control plane) starts at its first test
    and would otherwise load the 2-core machine under the timing-sensitive pipeline tests collected after it. The
    other long units of work (LONG_FIRST) come first."""

    def rank(item: pytest.Item) -> tuple[bool, int]:
        path = item.path.relative_to(ROOT).as_posix()
        first = next((i for i, prefix in enumerate(LONG_FIRST) if path.startswith(prefix)), len(LONG_FIRST))
        return item.get_closest_marker("kind") is not None, first

    items.sort(key=rank)
