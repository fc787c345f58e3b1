"""Fixtures of the operations e2e tests (dashboards, queries, verify): the bench of `testsupport.opsbench`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testsupport.opsbench import OpsBench, start_ops_bench


@pytest.fixture(scope="session")
def ops_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsBench]:
    """One bench per session (Thanos, one tenant's simulator/exporter/agent, a monitoring Prometheus)."""
    bench = start_ops_bench(tmp_path_factory.mktemp("ops-bench"))
    yield bench
    bench.group.stop_all()
