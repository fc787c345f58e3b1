"""Fixtures of the chart tests: real `helm` (3.x) and `helm4` binaries, offline chart copies with the stub
Kubecost dependency (testsupport.render).

pytest-helm-charts is not used in this layer: it drives a live cluster through a kubeconfig, which is what the
control-plane e2e layer has (tests-e2e); everything here is `helm template`/`helm lint`/kubeconform, offline.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from testsupport.render import chart_copy, kci_cache

HELMS = ("helm", "helm4")


def tool(name: str) -> str:
    """Path of a pinned tool; a missing tool FAILS the test (never skips) and says how to get it."""
    pinned = kci_cache() / "bin" / name
    if pinned.is_file():
        return str(pinned)
    in_venv = kci_cache() / "venv" / "bin" / name
    if in_venv.is_file():
        return str(in_venv)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"required tool {name!r} not found in {pinned.parent} or PATH: run `make tools`", pytrace=False)


@pytest.fixture
def require_tool() -> Callable[[str], str]:
    """`require_tool("promtool")` -> path, or a failed test naming the tool and `make tools`."""
    return tool


@pytest.fixture(params=HELMS)
def helm(request: pytest.FixtureRequest) -> str:
    """Both Helm majors: every rendering test runs under Helm 3 and Helm 4."""
    name = str(request.param)
    tool(name)
    return name


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    """A private copy of the chart with the stub `cost-analyzer` in charts/."""
    return chart_copy(tmp_path)
