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


def bench_scope(nodeid: str) -> str:
    """The unit of work of a test under pytest-xdist: its shared bench's directory, else its file."""
    path = nodeid.split("::", 1)[0]
    return next((d for d in SHARED_BENCHES if path.startswith(d)), path)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs the layers other than kind on two workers with `--dist loadscope`: the tests of one file, or
    of one shared bench directory, go to one worker, so no module- or session-scoped bench starts twice (two kwok
    control planes would also race for kwokctl's ports). pytest-xdist's own `loadgroup` marks cannot do this under
    pytest 9 (it renames `item._nodeid`, which `nodeid` no longer reads)."""
    if config.getvalue("dist") != "loadscope":
        return None
    return BenchScopeScheduling(config, log)


class BenchScopeScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist's schedulers are untyped
    def _split_scope(self, nodeid: str) -> str:
        return bench_scope(nodeid)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the kind layer last: its cluster (a node container with a whole control plane) starts at its first test
    and would otherwise load the 2-core machine under the timing-sensitive pipeline tests collected after it. The
    other end-to-end tests come first: their benches are the longest units of work, and under xdist a long unit
    started last keeps one worker busy alone at the end."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("kind") is not None,
            not item.path.relative_to(ROOT).as_posix().startswith("tests-e2e/"),
        )
    )
