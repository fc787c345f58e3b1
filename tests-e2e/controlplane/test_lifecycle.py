"""Release lifecycle on a real API server: install --wait, upgrade rolls pods, coexistence, helm test, uninstall."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_helm_charts.clusters import Cluster
from pytest_helm_charts.k8s.deployment import wait_for_deployments_to_run
from pytest_helm_charts.k8s.fixtures import NamespaceFactoryFunc

from testsupport.cluster import Helm, KwokCluster, eventually, wait_until

pytestmark = pytest.mark.controlplane

TENANT, CLUSTER = "acme", "prod-eu-1"
QUICKSTART = (
    f"allocationExporter.config.tenantId={TENANT}",
    f"allocationExporter.config.clusterName={CLUSTER}",
    f"global.clusterId={CLUSTER}",
)


def new_namespace(factory: NamespaceFactoryFunc, cluster: KwokCluster, name: str) -> str:
    """A namespace from pytest-helm-charts' factory (deleted after the module), populated by the control plane."""
    factory(name)
    cluster.wait_namespace_populated(name)
    return name


def workload_names(manifest: list[dict[str, Any]], kind: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in manifest if o.get("kind") == kind)


def assert_all_pods_ready(cluster: KwokCluster, namespace: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = cluster.get_json("pods", "-n", namespace)
    assert pods, f"no pods in {namespace}"
    for pod in pods:
        ready = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}.get("Ready")
        assert (pod["status"].get("phase"), ready) == ("Running", "True"), (
            f"pod {pod['metadata']['name']} is {pod['status'].get('phase')} (Ready={ready})"
        )
    return pods


def install_ready(
    helm: Helm,
    chart: Path,
    cluster: KwokCluster,
    kube_cluster: Cluster,
    release: str,
    namespace: str,
    set_args: tuple[str, ...] = QUICKSTART,
    extra_args: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """`helm install --wait`, then check with pytest-helm-charts that every Deployment runs; returns the manifest."""
    helm.install(release, chart, namespace, set_args=set_args, extra_args=extra_args)
    manifest = helm.manifest(release, namespace)
    deployments = workload_names(manifest, "Deployment")
    assert deployments, f"release {release} has no Deployment: {[o.get('kind') for o in manifest]}"
    assert kube_cluster.kube_client is not None
    wait_for_deployments_to_run(kube_cluster.kube_client, deployments, namespace, timeout_sec=60)
    assert_all_pods_ready(cluster, namespace)
    return manifest


@pytest.mark.parametrize("helm_name", ["helm", "helm4"])
def test_quick_start_installs_and_becomes_ready_with_only_tenant_and_cluster(
    helm_cli: Callable[[str], Helm],
    chart: Path,
    kwok_cluster: KwokCluster,
    kube_cluster: Cluster,
    request: pytest.FixtureRequest,
    helm_name: str,
) -> None:
    helm = helm_cli(helm_name)
    assert helm.major == {"helm": 3, "helm4": 4}[helm_name], helm.binary
    namespace = f"quickstart-{helm_name}"
    # The README's command creates the namespace itself (--create-namespace), so the factory is not used here.
    request.addfinalizer(lambda: kwok_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False))

    manifest = install_ready(
        helm,
        chart,
        kwok_cluster,
        kube_cluster,
        "my-kubecost",
        namespace,
        extra_args=("--create-namespace",),
    )

    components = {
        (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
        for o in manifest
        if o.get("kind") == "Deployment"
    }
    assert {"allocation-exporter", "agent"} <= components, components
    assert helm.status("my-kubecost", namespace)["info"]["status"] == "deployed"
    exporter = kwok_cluster.get_json(
        "deployments", "-n", namespace, "-l", "app.kubernetes.io/component=allocation-exporter"
    )
    env = {e["name"]: e.get("value") for e in exporter[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env.get("TENANT_ID"), env.get("CLUSTER_NAME")) == (TENANT, CLUSTER)


def rollout_state(cluster: KwokCluster, namespace: str) -> dict[str, dict[str, Any]]:
    """Per Deployment: the pod-template-hash of its current ReplicaSet and the pod template's checksum annotations."""
    state = {}
    replicasets = cluster.get_json("replicasets", "-n", namespace)
    for deploy in cluster.get_json("deployments", "-n", namespace):
        name = deploy["metadata"]["name"]
        revision = deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        current = [
            rs
            for rs in replicasets
            if any(ref["name"] == name for ref in rs["metadata"].get("ownerReferences", []))
            and rs["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == revision
        ]
        assert len(current) == 1, f"{name}: expected one ReplicaSet at revision {revision}"
        annotations = deploy["spec"]["template"]["metadata"].get("annotations") or {}
        state[name] = {
            "hash": current[0]["metadata"]["labels"]["pod-template-hash"],
            "checksums": {k: v for k, v in annotations.items() if k.startswith("checksum/")},
        }
    return state


@pytest.mark.parametrize("helm_name", ["helm", "helm4"])
def test_upgrade_with_changed_values_rolls_the_pods(
    helm_cli: Callable[[str], Helm],
    chart: Path,
    kwok_cluster: KwokCluster,
    kube_cluster: Cluster,
    namespace_factory: NamespaceFactoryFunc,
    helm_name: str,
) -> None:
    helm = helm_cli(helm_name)
    namespace = new_namespace(namespace_factory, kwok_cluster, f"upgrade-{helm_name}")
    install_ready(helm, chart, kwok_cluster, kube_cluster, "rollme", namespace)
    before = rollout_state(kwok_cluster, namespace)
    agent = kwok_cluster.get_json("deployments", "-n", namespace, "-l", "app.kubernetes.io/component=agent")
    agent_name = agent[0]["metadata"]["name"]
    assert before[agent_name]["checksums"], "the agent's pod template has no checksum/* annotation for its config"

    # One exporter setting (env) and one agent setting (its ConfigMap, reached only through the checksum).
    helm.upgrade(
        "rollme",
        chart,
        namespace,
        set_args=(
            "allocationExporter.config.refreshInterval=7m",
            "remoteWrite.url=https://thanos.example.test/api/v1/receive",
        ),
    )

    after = rollout_state(kwok_cluster, namespace)
    assert set(after) == set(before)
    for name in before:
        assert after[name]["hash"] != before[name]["hash"], f"{name} was not rolled (same pod-template-hash)"
    assert after[agent_name]["checksums"] != before[agent_name]["checksums"], "agent config checksum did not change"
    assert helm.status("rollme", namespace)["version"] == 2
    # Only pods of the new ReplicaSets are left, and they are ready.
    wait_until(
        lambda: (
            {p["metadata"]["labels"].get("pod-template-hash") for p in kwok_cluster.get_json("pods", "-n", namespace)}
            == {s["hash"] for s in after.values()}
        ),
        60,
        "old pods to go away after the rollout",
    )
    assert_all_pods_ready(kwok_cluster, namespace)


def test_two_releases_in_two_namespaces_coexist(
    helm3: Helm,
    chart: Path,
    kwok_cluster: KwokCluster,
    kube_cluster: Cluster,
    namespace_factory: NamespaceFactoryFunc,
) -> None:
    # Same release name in both namespaces: any cluster-scoped object without the namespace in its name would clash.
    team_a = new_namespace(namespace_factory, kwok_cluster, "team-a")
    team_b = new_namespace(namespace_factory, kwok_cluster, "team-b")
    install_ready(
        helm3,
        chart,
        kwok_cluster,
        kube_cluster,
        "my-kubecost",
        team_a,
        set_args=(
            "allocationExporter.config.tenantId=team-a",
            "allocationExporter.config.clusterName=a",
            "global.clusterId=a",
        ),
    )
    install_ready(
        helm3,
        chart,
        kwok_cluster,
        kube_cluster,
        "my-kubecost",
        team_b,
        set_args=(
            "allocationExporter.config.tenantId=team-b",
            "allocationExporter.config.clusterName=b",
            "global.clusterId=b",
        ),
    )
    b_before = {o["metadata"]["uid"] for o in kwok_cluster.get_json("all", "-n", team_b)}

    helm3.run("uninstall", "my-kubecost", "--namespace", team_a, "--wait", "--timeout", "120s")

    assert helm3.status("my-kubecost", team_b)["info"]["status"] == "deployed"
    b_after = {o["metadata"]["uid"] for o in kwok_cluster.get_json("all", "-n", team_b)}
    assert b_before <= b_after, "uninstalling team-a's release removed objects of team-b's release"
    assert_all_pods_ready(kwok_cluster, team_b)


def test_helm_test_completes(
    helm3: Helm,
    chart: Path,
    kwok_cluster: KwokCluster,
    kube_cluster: Cluster,
    namespace_factory: NamespaceFactoryFunc,
) -> None:
    namespace = new_namespace(namespace_factory, kwok_cluster, "helm-test")
    install_ready(helm3, chart, kwok_cluster, kube_cluster, "tested", namespace)
    hooks = helm3.run("get", "hooks", "tested", "--namespace", namespace).stdout
    assert "helm.sh/hook: test" in hooks, "the chart has no `helm test` hook, so `helm test` would pass vacuously"

    result = helm3.run("test", "tested", "--namespace", namespace, "--timeout", "120s")

    phases = re.findall(r"^Phase:\s*(\S+)", result.stdout, re.MULTILINE)
    assert phases, result.stdout
    assert set(phases) == {"Succeeded"}, result.stdout

    # Helm prints the pod's output itself (hook-output-log-policy), then deletes it: `helm uninstall` deletes no hook
    # resources, so a test pod that outlived `helm test` would outlive the release too.
    def test_pods_left() -> list[str]:
        names = [p["metadata"]["name"] for p in kwok_cluster.get_json("pods", "-n", namespace)]
        return [name for name in names if name.endswith("-test")]

    test_pods = eventually(test_pods_left, lambda names: not names, 60)
    assert not test_pods, f"the helm test pod outlived `helm test`: {test_pods}"


@pytest.mark.parametrize("helm_name", ["helm", "helm4"])
def test_uninstall_leaves_nothing_behind(
    helm_cli: Callable[[str], Helm],
    chart: Path,
    kwok_cluster: KwokCluster,
    kube_cluster: Cluster,
    namespace_factory: NamespaceFactoryFunc,
    helm_name: str,
) -> None:
    helm = helm_cli(helm_name)
    namespace = f"uninstall-{helm_name}"
    namespace_factory(namespace)
    baseline = kwok_cluster.wait_namespace_populated(namespace)
    install_ready(helm, chart, kwok_cluster, kube_cluster, "goner", namespace)
    helm.run("test", "goner", "--namespace", namespace, "--timeout", "120s")  # test hooks must not linger either
    installed = kwok_cluster.namespace_contents(namespace) - baseline
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= {kind for kind, _ in installed}, installed

    helm.run("uninstall", "goner", "--namespace", namespace, "--wait", "--timeout", "120s")

    # Garbage collection (ReplicaSets, Pods, EndpointSlices) is asynchronous: give it a moment, then diff.
    leftovers = eventually(lambda: kwok_cluster.namespace_contents(namespace) - baseline, lambda s: not s, 60)
    assert not leftovers, f"left behind in {namespace} after uninstall: {sorted(leftovers)}"
    assert kwok_cluster.cluster_scoped_of_release("goner", namespace) == []
