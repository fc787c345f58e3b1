"""`verify --kube-context/--kube-namespace` with real components end to end.

Real kube-apiserver (the kwok bench), the real `kubectl` (from `$KCI_CACHE/bin`) discovering the release's Services
and the exporter Deployment and running `kubectl port-forward svc/...`, and real exporter, Prometheus agent and
Thanos Receive/Query processes (`testsupport.pipeline`, agent mode, rendered from the chart with this release's
values). kwok plays the kubelet of the node the release's pods run on: kube-apiserver forwards each pod's
`portforward` stream to kwok's kubelet API, which connects it to the local process named by that pod's `PortForward`
object (kwok.x-k8s.io/v1alpha1):

    verify -> kubectl port-forward svc/<release>-...-exporter -> kube-apiserver -> kwok kubelet API -> exporter
           -> kubectl port-forward svc/<release>-...-agent    -> ...                                  -> agent
           -> kubectl port-forward svc/<release>-cost-analyzer -> ...                                 -> simulator

The chart's test-only `cost-analyzer` stub has a Service but no workload, so the test creates a one-replica
Deployment matching that Service (`COST_ANALYZER`): the Kubecost side is the API simulator, the only test double.

Broken links: the Kubecost pod's PortForward removed (kwok answers `no forward found`), the Kubecost pod gone (no
running pod behind the Service: verify gives up after `--timeout`, exit 2), the exporter process stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testsupport.cluster import Helm, KwokCluster, cache_bin, wait_until
from testsupport.pipeline import Tenant, TenantSpec, Thanos, start_tenant, start_thanos, wait_for_data
from testsupport.procs import PortInUse, Ports, ProcessGroup, StartupError, ToolMissing, require_tool
from testsupport.procs import wait_until as wait_procs

pytestmark = [pytest.mark.controlplane, pytest.mark.e2e]

CHECKS = ["exporter", "target", "remote-write", "thanos", "sums", "accuracy", "kubecost"]
NAMESPACE, RELEASE = "verify-kube", "kci"
SPEC = TenantSpec("kube-tenant", "kube-cluster", release=RELEASE, namespace=NAMESPACE)
EXPORTER_PORT, AGENT_PORT, KUBECOST_PORT = 9103, 9090, 9090  # container ports of the rendered chart
COST_ANALYZER_LABELS = {"app.kubernetes.io/name": "cost-analyzer", "app.kubernetes.io/instance": RELEASE}
COST_ANALYZER_LABELS["app"] = "cost-analyzer"
COST_ANALYZER = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": f"{RELEASE}-cost-analyzer", "namespace": NAMESPACE},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": COST_ANALYZER_LABELS},
        "template": {
            "metadata": {"labels": COST_ANALYZER_LABELS},
            "spec": {
                "containers": [
                    {
                        "name": "cost-model",
                        "image": "registry.invalid/kubecost-stand-in:0",  # kwok never pulls or runs it
                        "ports": [
                            {"name": "tcp-model", "containerPort": 9003},
                            {"name": "tcp-frontend", "containerPort": KUBECOST_PORT},
                        ],
                    }
                ]
            },
        },
    },
}


@dataclass
class KubeBench:
    cluster: KwokCluster
    group: ProcessGroup
    thanos: Thanos
    tenant: Tenant

    def pods(self, selector: str) -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = self.cluster.get_json("pods", "-n", NAMESPACE, "-l", selector)
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def pod(self, selector: str) -> str:
        pods = self.pods(selector)
        assert len(pods) == 1, f"expected one pod with {selector}: {[p['metadata']['name'] for p in pods]}"
        name: str = pods[0]["metadata"]["name"]
        return name

    def local_port(self, url: str) -> int:
        return int(url.rsplit(":", 1)[1])

    def forward_all(self) -> dict[str, str]:
        """A PortForward per pod of the release (and the Kubecost stand-in) to the local process; pod names."""
        targets = {
            "app.kubernetes.io/component=allocation-exporter": (EXPORTER_PORT, self.tenant.exporter_url),
            "app.kubernetes.io/component=agent": (AGENT_PORT, self.tenant.agent_url),
            "app=cost-analyzer": (KUBECOST_PORT, self.tenant.sim_url),
        }
        names = {}
        for selector, (pod_port, url) in targets.items():
            pod = self.pod(f"{selector},app.kubernetes.io/instance={RELEASE}")
            self.cluster.forward_pod_ports(NAMESPACE, pod, {pod_port: self.local_port(url)})
            names[selector] = pod
        return names


def verify(bench: KubeBench, *extra: str, timeout: str = "10s") -> tuple[int, dict[str, Any], str, float]:
    """The installed console script with the real kubectl; (exit code, JSON report, stderr, seconds)."""
    exe = require_tool("kubecost-allocation-exporter", [Path(sys.executable).parent], hint="run `make venv`")
    cmd = [
        exe,
        "verify",
        "--output",
        "json",
        "--sample-seconds",
        "3",
        "--timeout",
        timeout,
        "--kubectl",
        str(cache_bin("kubectl")),
        "--kube-context",
        f"kwok-{bench.cluster.name}",
        "--kube-namespace",
        NAMESPACE,
        "--release",
        RELEASE,
        "--thanos-url",
        bench.thanos.query_url,
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["KUBECONFIG"] = str(bench.cluster.kubeconfig)
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False, env=env)
    took = time.monotonic() - started
    try:
        doc: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        pytest.fail(f"verify printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, doc, proc.stderr, took


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in doc["checks"]}


def check(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in doc["checks"] if c["name"] == name)
    return found


@pytest.fixture(scope="module")
def kube_bench(
    kwok_cluster: KwokCluster, helm3: Helm, chart: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeBench]:
    group = ProcessGroup(tmp_path_factory.mktemp("verify-kube-pipeline"))
    kwok_cluster.kubectl("create", "namespace", NAMESPACE)
    try:
        ports = Ports()
        thanos = start_thanos(group, ports)
        tenant = start_tenant(group, ports, thanos, SPEC)
        wait_for_data(thanos, tenant, group)
        helm3.install(
            RELEASE,
            chart,
            NAMESPACE,
            set_args=(
                f"allocationExporter.config.tenantId={SPEC.tenant_id}",
                f"allocationExporter.config.clusterName={SPEC.cluster_name}",
                # the Kubecost 2 engine: this test runs a workload behind its `<release>-cost-analyzer` Service
                "kubecost.enabled=false",
                "cost-analyzer.enabled=true",
                "prometheus.mode=agent",
            ),
        )
        kwok_cluster.kubectl("apply", "-f", "-", input=json.dumps(COST_ANALYZER))
        kwok_cluster.kubectl(
            "rollout", "status", "-n", NAMESPACE, f"deployment/{RELEASE}-cost-analyzer", "--timeout=60s", timeout=90
        )
        bench = KubeBench(kwok_cluster, group, thanos, tenant)
        bench.forward_all()
    except (ToolMissing, PortInUse) as err:
        group.stop_all()
        pytest.fail(str(err), pytrace=False)
    except (StartupError, RuntimeError, OSError) as err:
        report = group.logs_report()
        group.stop_all()
        pytest.fail(f"verify-kube bench did not come up: {err}\n\n{report}", pytrace=False)
    yield bench
    group.stop_all()
    helm3.run("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
    kwok_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_every_link_passes_through_real_port_forwards(kube_bench: KubeBench) -> None:
    node = kube_bench.cluster.get_json("pods", "-n", NAMESPACE)[0]["spec"]["nodeName"]
    host, port = kube_bench.cluster.kubelet_endpoint(node)
    assert f"127.0.0.1:{port}" == kube_bench.cluster.kwok_server_address()
    assert host == "localhost"
    asked_after = time.time()

    rc, doc, err, took = verify(kube_bench)

    assert rc == 0, json.dumps(doc, indent=2) + err
    assert statuses(doc) == dict.fromkeys(CHECKS, "pass")
    assert (doc["cluster"], doc["tenant_id"]) == (SPEC.cluster_name, SPEC.tenant_id)
    # Every in-cluster link went through a kubectl port-forward (a local port of kubectl's, not the process's own).
    direct = {
        "exporter": kube_bench.tenant.exporter_url,
        "target": kube_bench.tenant.agent_url,
        "remote-write": kube_bench.tenant.agent_url,
        "kubecost": kube_bench.tenant.sim_url,
    }
    for name, own_url in direct.items():
        url = check(doc, name)["details"]["url"]
        assert url.startswith("http://127.0.0.1:"), (name, url, own_url)
        assert url != own_url, (name, url, own_url)
    # ...and reached the real processes: the agent's target is the exporter, Kubecost's answer came from the simulator.
    assert check(doc, "target")["details"]["targets"][0]["health"] == "up"
    asked = [r for r in kube_bench.tenant.sim_requests(limit=1000) if r["time"] >= asked_after]
    assert any(r["params"].get("aggregate") == "cluster" for r in asked), asked
    print(f"\nverify through kubectl port-forward: all {len(CHECKS)} links pass in {took:.1f}s")


def test_kubecost_port_forward_removed_is_named(kube_bench: KubeBench) -> None:
    pod = kube_bench.pod(f"app=cost-analyzer,app.kubernetes.io/instance={RELEASE}")
    kube_bench.cluster.kubectl("delete", "portforward.kwok.x-k8s.io", pod, "-n", NAMESPACE)
    seen: list[tuple[int, dict[str, Any]]] = []
    try:

        def kubecost_fails() -> bool:
            rc, doc, _err, _took = verify(kube_bench)
            seen[:] = [(rc, doc)]
            return rc == 1 and statuses(doc)["kubecost"] == "fail"

        wait_until(kubecost_fails, 60, "verify to report the kubecost link failing", interval=1)
        rc, doc = seen[0]
        assert {k: v for k, v in statuses(doc).items() if k != "kubecost"} == dict.fromkeys(CHECKS[:-1], "pass")
        summary = check(doc, "kubecost")["summary"]
        # kwok's kubelet answer, as kubectl reported it, is in the failure.
        assert f"kubectl port-forward {NAMESPACE}/svc/{RELEASE}-cost-analyzer:{KUBECOST_PORT}" in summary, summary
        assert "no forward found for port" in summary, summary
        print(f"\nkubecost link broken: FAIL kubecost {summary}")
    finally:
        kube_bench.forward_all()
    rc, doc, err, _ = verify(kube_bench)
    assert rc == 0, json.dumps(doc, indent=2) + err


def test_no_running_pod_behind_a_service_exits_2_within_the_timeout(kube_bench: KubeBench) -> None:
    deployment = f"deployment/{RELEASE}-cost-analyzer"
    kube_bench.cluster.kubectl("scale", "-n", NAMESPACE, deployment, "--replicas=0")
    try:
        wait_until(lambda: not kube_bench.pods("app=cost-analyzer"), 60, "the Kubecost stand-in pod to go")
        rc, doc, err, took = verify(kube_bench, timeout="5s")
        assert rc == 2, (doc, err)
        assert f"port-forward svc/{RELEASE}-cost-analyzer" in err, err
        assert "--pod-running-timeout=5s" in err, err
        # kubectl's own wait for a running pod is 1 min by default; verify's --timeout bounds it.
        assert took < 30, f"verify took {took:.1f}s with --timeout 5s"
        print(f"\nno pod behind the Service: exit 2 after {took:.1f}s: {err.strip()}")
    finally:
        kube_bench.cluster.kubectl("scale", "-n", NAMESPACE, deployment, "--replicas=1")
        kube_bench.cluster.kubectl("rollout", "status", "-n", NAMESPACE, deployment, "--timeout=60s", timeout=90)
        kube_bench.forward_all()


def test_exporter_process_stopped_is_named(kube_bench: KubeBench) -> None:
    """Last in the module: the exporter process is not restarted."""
    exporter = next(p for p in kube_bench.group.procs if p.name == f"exporter-{SPEC.tenant_id}")
    os.killpg(exporter.popen.pid, signal.SIGTERM)
    exporter.popen.wait(timeout=30)
    ids = ["--cluster-name", SPEC.cluster_name, "--tenant-id", SPEC.tenant_id]
    seen: list[dict[str, Any]] = []

    def target_down() -> bool:
        _rc, doc, _err, _took = verify(kube_bench, *ids, "--skip", "remote-write", "--skip", "thanos")
        seen[:] = [doc]
        return statuses(doc)["target"] == "fail"

    wait_procs(target_down, 30, "the agent to mark the exporter target down", interval=1)
    rc, doc, err, _ = verify(kube_bench, *ids, "--skip", "remote-write", "--skip", "thanos")
    assert rc == 1, json.dumps(doc, indent=2) + err
    st = statuses(doc)
    assert st["exporter"] == "fail", doc
    assert st["target"] == "fail", doc
    assert "not up" in check(doc, "target")["summary"], doc
    exporter_check = check(doc, "exporter")
    assert "connection refused or unreachable" in exporter_check["summary"], exporter_check
    # kubectl relays kwok's failed dial of the stopped process.
    assert f"kubectl port-forward {NAMESPACE}/svc/{RELEASE}-kubecost-integration-exporter" in exporter_check["summary"]
    assert "connection refused" in exporter_check["details"]["port_forward"]["kubectl"], exporter_check
    assert st["sums"] == st["kubecost"] == "skip", doc  # they need the exporter's metrics
    print(f"\nexporter stopped: FAIL exporter {exporter_check['summary']}")
