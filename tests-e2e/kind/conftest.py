"""Fixtures of the kind layer: one real kind cluster per session, Thanos in it, the chart installed for real.

The cluster comes from `scripts/kind.sh up` (offline here: images built by `scripts/images.sh`; stock kind on
GitHub). A cluster that is already up (`make kind-up`) is used as it is and left running; one this session made
is deleted at the end, together with our Docker Engine when this session started it.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testsupport.kind import (
    ROOT,
    CommandFailed,
    KindCluster,
    LocalImages,
    set_args,
    state_dir,
)
from testsupport.render import chart_copy

#: In-cluster Thanos Receive (tests-e2e/kind/thanos.yaml), the remote_write target of every release here.
RECEIVE_URL = "http://thanos-receive.thanos.svc.cluster.local:19291/api/v1/receive"


def _script(*args: str, timeout: float = 3600) -> None:
    """Run a repo script with its progress lines going to the terminal (pytest -s) and a clear failure."""
    proc = subprocess.run([str(ROOT / "scripts" / args[0]), *args[1:]], cwd=ROOT, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"scripts/{' '.join(args)} exited {proc.returncode} (its output is above)")


def _status(*args: str) -> bool:
    return (
        subprocess.run(
            [str(ROOT / "scripts" / args[0]), *args[1:]], cwd=ROOT, capture_output=True, check=False
        ).returncode
        == 0
    )


@pytest.fixture(scope="session")
def kind_cluster() -> Iterator[KindCluster]:
    docker_was_up = _status("docker.sh", "status")
    cluster_was_up = docker_was_up and _status("kind.sh", "status") and (state_dir() / "env").is_file()
    start = time.monotonic()
    if not cluster_was_up:
        _script("kind.sh", "up")
    cluster = KindCluster.from_env_file()
    print(
        f"\nkind cluster {cluster.name}: {'reused' if cluster_was_up else 'created'} in "
        f"{time.monotonic() - start:.0f}s (KUBECONFIG={cluster.kubeconfig})"
    )
    try:
        yield cluster
    finally:
        if not cluster_was_up:
            _script("kind.sh", "down", timeout=600)
            if not docker_was_up:
                _script("docker.sh", "down", timeout=120)


@pytest.fixture(scope="session")
def images() -> LocalImages:
    return LocalImages.current()


@pytest.fixture(scope="session")
def thanos(kind_cluster: KindCluster) -> KindCluster:
    """Thanos Receive + Query are installed by `scripts/kind.sh up`; wait until Query answers from this machine."""
    kind_cluster.wait_rollout("thanos", "deployment/thanos-receive", "deployment/thanos-query")
    deadline = time.monotonic() + 120
    while True:
        try:
            kind_cluster.thanos_query("up")
            return kind_cluster
        except Exception as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"Thanos Query at {kind_cluster.thanos_query_url} does not answer: {exc}") from exc
            time.sleep(2)


@pytest.fixture(scope="session")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart with the test-only stub as its `cost-analyzer` dependency: Kubecost's own images cannot be had
    here, so every release disables the engines (`kubecost.enabled=false`, ...) and reads the in-cluster OpenCost."""
    return chart_copy(tmp_path_factory.mktemp("kind-chart"))


@pytest.fixture(scope="session")
def opencost_url(kind_cluster: KindCluster) -> Iterator[str]:
    """Real OpenCost in the cluster (with its own Prometheus and a known price list): the cost engine."""
    from testsupport import opencost

    # One that is already running (a developer's cluster after an earlier run) is used as it is and kept.
    ready = kind_cluster.kubectl(
        "-n",
        opencost.NAMESPACE,
        "get",
        "deployment",
        opencost.SERVICE,
        "-o",
        "jsonpath={.status.readyReplicas}",
        check=False,
    )
    if ready.returncode == 0 and ready.stdout.strip() not in ("", "0"):
        yield opencost.IN_CLUSTER_URL
        return
    with opencost.installed(kind_cluster) as url:
        yield url


def engine_values(url: str) -> dict[str, Any]:
    """The cost engine part of a release's values: no bundled engine, the in-cluster OpenCost instead."""
    return {
        "kubecost.enabled": False,
        "cost-analyzer.enabled": False,
        "opencost.enabled": False,
        "allocationExporter.config.kubecostUrl": url,
        "allocationExporter.config.api": "opencost",
    }


class Releases:
    """Installs releases of the chart and uninstalls (and deletes their namespaces) at the end of the test."""

    def __init__(self, cluster: KindCluster, chart: Path, images: LocalImages) -> None:
        self.cluster = cluster
        self.chart = chart
        self.images = images
        self.made: list[tuple[str, str]] = []

    def namespace(self, prefix: str, labels: dict[str, str] | None = None) -> str:
        ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.cluster.kubectl("create", "namespace", ns)
        if labels:
            self.cluster.kubectl("label", "namespace", ns, *(f"{k}={v}" for k, v in labels.items()))
        self.made.append(("", ns))
        return ns

    def install(
        self, release: str, namespace: str, values: dict[str, Any], *extra: str, wait: str = "5m"
    ) -> subprocess.CompletedProcess[str]:
        self.made.append((release, namespace))
        return self.cluster.helm(
            "install",
            release,
            str(self.chart),
            "-n",
            namespace,
            *self.images.chart_set_args(),
            *set_args(values),
            "--wait",
            f"--timeout={wait}",
            *extra,
        )

    def cleanup(self) -> None:
        for release, ns in reversed(self.made):
            with contextlib.suppress(CommandFailed):
                if release:
                    self.cluster.helm("uninstall", release, "-n", ns, "--wait", "--timeout=3m")
                else:
                    self.cluster.delete_namespace(ns)


@pytest.fixture
def releases(kind_cluster: KindCluster, chart_dir: Path, images: LocalImages) -> Iterator[Releases]:
    r = Releases(kind_cluster, chart_dir, images)
    try:
        yield r
    finally:
        r.cleanup()


def pods_ready(cluster: KindCluster, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    """Every pod of the namespace (or selector) Running with every container ready; returns them."""
    args = ["-n", namespace, "get", "pods"] + (["-l", selector] if selector else [])
    pods: list[dict[str, Any]] = cluster.kubectl_json(*args)["items"]
    # Finished pods and pods on their way out (a rollout's old pod) are not the workload's current state.
    pods = [p for p in pods if p["status"].get("phase") != "Succeeded" and not p["metadata"].get("deletionTimestamp")]
    assert pods, f"no pods in {namespace} {selector}"
    for p in pods:
        statuses = p["status"].get("containerStatuses") or []
        assert p["status"].get("phase") == "Running", f"pod {p['metadata']['name']} not ready: {p['status']}"
        assert statuses, f"pod {p['metadata']['name']} not ready: {p['status']}"
        assert all(s["ready"] for s in statuses), f"pod {p['metadata']['name']} not ready: {p['status']}"
    return pods


WaitFn = Callable[[], bool]
