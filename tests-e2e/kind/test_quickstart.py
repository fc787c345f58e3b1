"""The README quick start on a real cluster: real pods Ready, data in Thanos for the tenant, helm test, upgrade,
uninstall.

As written in the README (only `tenantId` and `clusterName`), plus what this machine forces: the local images
(no registry) and the cost engine pointed at the in-cluster OpenCost (Kubecost's own images cannot be had here),
and `remoteWrite.url` at the in-cluster Thanos Receive instead of the platform's.
"""

from __future__ import annotations

import time

import pytest

from testsupport.kind import KindCluster

from .conftest import RECEIVE_URL, Releases, engine_values, pods_ready

pytestmark = pytest.mark.kind

RELEASE = "my-kubecost"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
# Namespaced kinds the chart can make; uninstall must leave none of them labelled with the release.
NAMESPACED_KINDS = (
    "deployments,statefulsets,replicasets,services,endpoints,configmaps,secrets,serviceaccounts,"
    "roles,rolebindings,networkpolicies,poddisruptionbudgets,persistentvolumeclaims,jobs"
)


def test_quickstart_install_test_upgrade_uninstall(releases: Releases, thanos: KindCluster, opencost_url: str) -> None:
    cluster = thanos
    tenant = f"kind-qs-{int(time.time()) % 100000}"
    ns = releases.namespace("my-ns")
    started = time.monotonic()
    releases.install(
        RELEASE,
        ns,
        {
            "allocationExporter.config.tenantId": tenant,
            "allocationExporter.config.clusterName": "prod-eu-1",
            "remoteWrite.url": RECEIVE_URL,
            **engine_values(opencost_url),
        },
    )
    install_s = time.monotonic() - started
    pods = pods_ready(cluster, ns, INSTANCE)
    components = sorted({p["metadata"]["labels"].get("app.kubernetes.io/component", "?") for p in pods})
    assert components == ["agent", "allocation-exporter"], components
    print(f"\nhelm install --wait: {install_s:.0f}s; pods Ready: {[p['metadata']['name'] for p in pods]}")

    # Data reaches Thanos through the agent's remote_write with the tenant header: Receive sets tenant_id from
    # the THANOS-TENANT header (a missing header would file the series under its default tenant).
    series = cluster.wait_thanos(f'cloudtuner_kubecost_scrape_success{{tenant_id="{tenant}"}} == 1', timeout=300)
    assert all(s["metric"]["cluster"] == "prod-eu-1" for s in series), series
    # Only our series leave the cluster, all of them under this tenant and cluster. (The costs themselves need a
    # window the young engine has data for: the default is the last complete hour; test_opencost.py checks them.)
    names = cluster.thanos_query(f'count by (__name__, cluster) ({{__name__=~".+", tenant_id="{tenant}"}})')
    assert names, names
    assert all(s["metric"]["__name__"].startswith("cloudtuner_kubecost_") for s in names), names
    assert {s["metric"]["cluster"] for s in names} == {"prod-eu-1"}, names
    print(f"in Thanos after {time.monotonic() - started:.0f}s: {len(names)} series names for tenant {tenant}")

    # helm test: the chart's test pod checks the exporter from inside the cluster.
    out = cluster.helm("test", RELEASE, "-n", ns, "--timeout=3m").stdout
    assert "Phase:          Succeeded" in out or "Phase: Succeeded" in out.replace("  ", " "), out

    # helm upgrade with a changed value rolls the exporter: a new pod with the new setting replaces the old one.
    old = {
        p["metadata"]["uid"]
        for p in pods
        if p["metadata"]["labels"]["app.kubernetes.io/component"] == "allocation-exporter"
    }
    cluster.helm(
        "upgrade",
        RELEASE,
        str(releases.chart),
        "-n",
        ns,
        "--reuse-values",
        "--set=allocationExporter.config.logLevel=debug",
        "--wait",
        "--timeout=5m",
    )
    cluster.wait_rollout(ns, f"deployment/{RELEASE}-kubecost-integration-exporter")
    new_pods = pods_ready(cluster, ns, f"{INSTANCE},app.kubernetes.io/component=allocation-exporter")
    assert {p["metadata"]["uid"] for p in new_pods}.isdisjoint(old), "exporter pod was not replaced"
    env = {e["name"]: e.get("value") for p in new_pods for c in p["spec"]["containers"] for e in c.get("env", [])}
    assert env.get("LOG_LEVEL") == "debug", env

    # helm uninstall leaves nothing of the release behind.
    cluster.helm("uninstall", RELEASE, "-n", ns, "--wait", "--timeout=3m")
    left = cluster.kubectl("-n", ns, "get", NAMESPACED_KINDS, "-l", INSTANCE, "-o", "name").stdout.split()
    left_cluster = cluster.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", INSTANCE, "-o", "name"
    ).stdout.split()
    assert not left, (left, left_cluster)
    assert not left_cluster, (left, left_cluster)
    # Pods go after their grace period (helm's --wait covers the objects it deleted, not their pods).
    deadline = time.monotonic() + 120
    while pods_left := cluster.kubectl("-n", ns, "get", "pods", "-l", INSTANCE, "-o", "name").stdout.split():
        assert time.monotonic() < deadline, f"pods still there 2 min after uninstall: {pods_left}"
        time.sleep(2)
