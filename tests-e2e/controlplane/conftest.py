"""Fixtures for the control-plane e2e layer: one kwokctl cluster per session, a stub-dependency chart copy, Helm 3/4.

pytest-helm-charts is used where it fits: its `kube_cluster` fixture (pykube client + `kubectl`) is pointed at the
kwok cluster by overriding `kube_config` below (it would otherwise read `KUBECONFIG` / `--kube-config`), and the
tests use its `namespace_factory` and `wait_for_deployments_to_run`. It has no `helm install` helper for a plain
cluster (its installers go through Flux or Giant Swarm App CRs, which need controllers kwok does not run), so Helm
is driven through the CLI (`testsupport.cluster.Helm`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testsupport.cluster import Helm, KwokCluster, create_kwok_cluster
from testsupport.render import chart_copy, helm_binary

STAGES_DIR = Path(__file__).resolve().parent / "stages"


@pytest.fixture(scope="session")
def kwok_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KwokCluster]:
    """kube-apiserver + etcd + kube-controller-manager + kube-scheduler + kwok (one fake node), local binaries."""
    cluster = create_kwok_cluster(tmp_path_factory.mktemp("kwok"), STAGES_DIR)
    print(f"\nkwok cluster {cluster.name} ready in {cluster.create_seconds:.1f}s ({cluster.kubeconfig})")
    yield cluster
    cluster.delete()


@pytest.fixture(scope="session")
def kube_config(kwok_cluster: KwokCluster) -> str:
    """Overrides pytest-helm-charts' `kube_config` so its `kube_cluster` talks to the kwok cluster."""
    return str(kwok_cluster.kubeconfig)


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart with the test-only stub `cost-analyzer` dependency (never the real Kubecost chart, no network)."""
    return chart_copy(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="session")
def helm_cli(kwok_cluster: KwokCluster, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Helm]:
    """`helm_cli("helm")` (Helm 3) or `helm_cli("helm4")` (Helm 4), bound to the kwok cluster."""
    home = tmp_path_factory.mktemp("helm-home")

    def make(name: str) -> Helm:
        return Helm(binary=helm_binary(name), kubeconfig=kwok_cluster.kubeconfig, home=home / name)

    return make


@pytest.fixture(scope="session")
def helm3(helm_cli: Callable[[str], Helm]) -> Helm:
    helm = helm_cli("helm")
    assert helm.major == 3, f"{helm.binary} is not Helm 3"
    return helm


@pytest.fixture(scope="session", autouse=True)
def _layer_wall_time() -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"\ncontrol-plane layer wall time: {time.monotonic() - started:.1f}s")
