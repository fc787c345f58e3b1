"""Every rendered object validated by the real API server, and the release admitted under restricted Pod Security."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_helm_charts.clusters import Cluster
from pytest_helm_charts.k8s.fixtures import NamespaceFactoryFunc

from testsupport.cluster import Helm, KwokCluster
from testsupport.render import CHART_DIR, QUICKSTART_VALUES, deep_merge, helm_template, render_error, with_quickstart

pytestmark = pytest.mark.controlplane

SCENARIOS = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
MODES = ("agent", "kubecost", "external")
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
}

# A minimal ServiceMonitor CRD (see the file), shared with the kind job.
SERVICEMONITOR_CRD = Path(__file__).resolve().parent.parent / "kind" / "servicemonitor-crd.yaml"


def scenario_mode(path: Path) -> str:
    values = yaml.safe_load(path.read_text()) or {}
    return str((values.get("prometheus") or {}).get("mode", "agent"))


def values_for_mode(mode: str, release: str, namespace: str) -> dict[str, Any]:
    """The quick start switched to `mode`. For `kubecost` mode the Kubecost subchart values are taken from the
    chart's own validation message ("add exactly this to your values"), i.e. what a user following it would do."""
    values = with_quickstart({"prometheus": {"mode": mode}})
    if mode == "kubecost":
        # kubecost mode needs the Kubecost 2 engine (the chart says so first); then it prints the block
        values = deep_merge(values, {"kubecost": {"enabled": False}, "cost-analyzer": {"enabled": True}})
        message = render_error(values, release=release, namespace=namespace)
        block = message.split("add exactly this to your values", 1)[1].split("\n\n", 1)[1]
        values = deep_merge(values, yaml.safe_load(block.split("\n\n\n", 1)[0]))
    return values


def test_every_ci_scenario_is_validated_under_a_known_mode() -> None:
    """The per-mode validation below also runs the chart's ci/ scenarios; none may fall outside the modes."""
    assert SCENARIOS, f"no scenarios in {CHART_DIR / 'ci'}"
    assert {p.name: scenario_mode(p) for p in SCENARIOS if scenario_mode(p) not in MODES} == {}


@pytest.fixture
def servicemonitor_crd(kwok_cluster: KwokCluster) -> Iterator[None]:
    """The ServiceMonitor CRD, for the duration of one test (so other tests see a cluster without it)."""
    kwok_cluster.kubectl("apply", "-f", str(SERVICEMONITOR_CRD))
    kwok_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com", "--timeout=60s"
    )
    yield
    kwok_cluster.kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "--wait=true", "--timeout=60s")


def server_dry_run(cluster: KwokCluster, namespace: str, manifest: str) -> str:
    """`kubectl apply --dry-run=server` (strict field validation, admission included); returns stderr (warnings)."""
    return cluster.kubectl("apply", "--dry-run=server", "--namespace", namespace, "-f", "-", input=manifest).stderr


def render_live(
    cluster: KwokCluster,
    chart: Path,
    namespace: str,
    values: Mapping[str, Any] | None = None,
    values_file: Path | None = None,
    release: str = "my-kubecost",
) -> str:
    """`helm template --validate`: rendered with the live cluster's capabilities (API versions, Kubernetes
    version), test hooks included, as `helm install` would send them."""
    extra = ["--validate", "--kubeconfig", str(cluster.kubeconfig)]
    if values_file is not None:
        extra += ["--values", str(values_file)]
    return helm_template(values, release=release, namespace=namespace, chart=chart, extra_args=extra)


@pytest.mark.parametrize("mode", MODES)
def test_every_rendered_object_passes_server_side_validation(
    request: pytest.FixtureRequest,
    kwok_cluster: KwokCluster,
    kube_cluster: Cluster,
    chart: Path,
    namespace_factory: NamespaceFactoryFunc,
    mode: str,
) -> None:
    if mode == "external":
        request.getfixturevalue("servicemonitor_crd")
    namespace = f"dry-{mode}"
    namespace_factory(namespace)
    renders = {
        "quick start": render_live(kwok_cluster, chart, namespace, values_for_mode(mode, "my-kubecost", namespace))
    }
    # The chart's ci/ scenarios of this mode too (the same files `ct install` runs in the kind workflow).
    for scenario in (p for p in SCENARIOS if scenario_mode(p) == mode):
        renders[scenario.name] = render_live(kwok_cluster, chart, namespace, values_file=scenario)

    for name, manifest in renders.items():
        kinds = {d["kind"] for d in yaml.safe_load_all(manifest) if d}
        assert "Deployment" in kinds, (name, kinds)
        if mode == "external":
            assert "ServiceMonitor" in kinds, (name, kinds)
        warnings = server_dry_run(kwok_cluster, namespace, manifest)
        assert "Warning" not in warnings, (name, warnings)


def test_restricted_pod_security_namespace_accepts_the_release(
    helm3: Helm,
    kwok_cluster: KwokCluster,
    kube_cluster: Cluster,
    chart: Path,
    namespace_factory: NamespaceFactoryFunc,
) -> None:
    namespace = "restricted"
    namespace_factory(namespace, extra_metadata={"labels": RESTRICTED})
    kwok_cluster.wait_namespace_populated(namespace)
    # Control: this cluster really enforces `restricted` in that namespace.
    privileged = kwok_cluster.kubectl(
        "run",
        "privileged",
        "--image=busybox",
        "--privileged",
        "--dry-run=server",
        "-n",
        namespace,
        check=False,
    )
    assert privileged.returncode != 0, privileged.stdout
    assert "violates PodSecurity" in privileged.stderr, privileged.stderr

    # Workload objects only *warn* under `warn=restricted`; their pods would be rejected. Both must be silent.
    warnings = server_dry_run(kwok_cluster, namespace, render_live(kwok_cluster, chart, namespace, QUICKSTART_VALUES))
    assert "PodSecurity" not in warnings, warnings

    helm3.install(
        "my-kubecost",
        chart,
        namespace,
        set_args=(
            "allocationExporter.config.tenantId=acme",
            "allocationExporter.config.clusterName=prod-eu-1",
            "global.clusterId=prod-eu-1",
        ),
    )
    pods: list[dict[str, Any]] = kwok_cluster.get_json("pods", "-n", namespace)
    assert pods
    assert {p["status"].get("phase") for p in pods} == {"Running"}, [p["metadata"]["name"] for p in pods]
    # The `helm test` pod is admitted under `restricted` too.
    result = helm3.run("test", "my-kubecost", "--namespace", namespace, "--timeout", "120s")
    assert "Succeeded" in result.stdout, result.stdout
