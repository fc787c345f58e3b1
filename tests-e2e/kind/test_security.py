"""Security on a real kubelet: Pod Security `restricted` enforced, NetworkPolicies enforced by a real enforcer.

The control-plane layer (kwok) proves the API server admits the chart under `restricted`; here the pods must also
*run* there (read-only root filesystem, non-root uid, seccomp RuntimeDefault, no capabilities) on a real kubelet
and container runtime, and the NetworkPolicies must actually block traffic (kwok has no network at all).
"""

from __future__ import annotations

import json
import time

import pytest

from testsupport.kind import CommandFailed, KindCluster, LocalImages

from .conftest import RECEIVE_URL, Releases, engine_values, pods_ready

pytestmark = pytest.mark.kind

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def _release_values(tenant: str, opencost_url: str) -> dict[str, object]:
    return {
        "allocationExporter.config.tenantId": tenant,
        "allocationExporter.config.clusterName": "kind-security",
        "remoteWrite.url": RECEIVE_URL,
        **engine_values(opencost_url),
    }


def test_restricted_namespace_runs_the_chart(
    releases: Releases, thanos: KindCluster, opencost_url: str, images: LocalImages
) -> None:
    cluster = thanos
    ns = releases.namespace("kci-restricted", RESTRICTED)
    # Control: the namespace really enforces `restricted` (a privileged pod is refused at admission).
    overrides = {
        "spec": {
            "containers": [
                {
                    "name": "p", "image": images.debian, "imagePullPolicy": images.pull_policy,
                    "command": ["sleep", "1"], "securityContext": {"privileged": True},
                }
            ]
        }
    }  # fmt: skip
    refused = cluster.kubectl(
        "-n",
        ns,
        "run",
        "privileged-probe",
        f"--image={images.debian}",
        "--restart=Never",
        "--overrides",
        json.dumps(overrides),
        check=False,
    )
    assert refused.returncode != 0, refused.stderr
    assert "violates PodSecurity" in refused.stderr, refused.stderr

    releases.install("sec", ns, _release_values("kind-restricted", opencost_url))
    pods = pods_ready(cluster, ns, "app.kubernetes.io/instance=sec")
    for pod in pods:
        spec = pod["spec"]
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, (pod["metadata"]["name"], sc)
            assert sc.get("allowPrivilegeEscalation") is False, sc
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], sc
        # What the kubelet actually runs: a non-root uid and a read-only root filesystem.
        name = pod["metadata"]["name"]
        container = spec["containers"][0]["name"]
        uid = cluster.kubectl("-n", ns, "exec", name, "-c", container, "--", "id", "-u", check=False)
        if uid.returncode == 0:  # images without `id` (the agent's) are checked by their spec above
            assert uid.stdout.strip() not in ("", "0"), uid.stdout
        write = cluster.kubectl(
            "-n", ns, "exec", name, "-c", container, "--", "sh", "-c", "echo x > /probe", check=False
        )
        if "executable file not found" not in write.stderr:
            assert write.returncode != 0, write.stderr
            assert "Read-only file system" in write.stderr, write.stderr
    out = cluster.helm("test", "sec", "-n", ns, "--timeout=3m").stdout
    assert "Succeeded" in out, out


CONNECT = """import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("open")
except OSError as err:
    print("blocked:", err)
"""


def _connect(cluster: KindCluster, ns: str, target: str, host: str, port: int) -> str:
    return cluster.kubectl("-n", ns, "exec", target, "--", "python3", "-c", CONNECT, host, str(port)).stdout.strip()


def test_network_policies_enforced(
    releases: Releases, thanos: KindCluster, opencost_url: str, images: LocalImages
) -> None:
    cluster = thanos
    ns = releases.namespace("kci-netpol")
    tenant = f"kind-np-{int(time.time()) % 100000}"
    releases.install("np", ns, {**_release_values(tenant, opencost_url), "networkPolicy.enabled": True})
    policies = cluster.kubectl_json("-n", ns, "get", "networkpolicies")["items"]
    assert len(policies) >= 2, [p["metadata"]["name"] for p in policies]
    since = time.time()
    exporter = "deployment/np-kubecost-integration-exporter"

    # A pod no policy selects, from the exporter image (python3 inside).
    cluster.kubectl(
        "-n",
        ns,
        "run",
        "np-probe",
        f"--image={images.exporter}",
        "--image-pull-policy=Never",
        "--restart=Never",
        "--labels=app=np-probe",
        "--command",
        "--",
        "python3",
        "-c",
        "import time; time.sleep(900)",
    )
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/np-probe", "--timeout=120s")
    query = "thanos-query.thanos.svc.cluster.local"
    exporter_svc = f"np-kubecost-integration-exporter.{ns}.svc"
    # Control: the network itself works from the probe.
    assert _connect(cluster, ns, "pod/np-probe", query, 10902) == "open"
    # Exporter ingress: only the agent and the test pod may scrape it.
    assert _connect(cluster, ns, "pod/np-probe", exporter_svc, 9103).startswith("blocked")
    # Exporter egress: only DNS and the cost engine.
    assert _connect(cluster, ns, exporter, query, 10902).startswith("blocked")
    assert (
        _connect(
            cluster,
            ns,
            exporter,
            opencost_url.split("//")[1].split(":", maxsplit=1)[0],
            int(opencost_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]),
        )
        == "open"
    )

    # The allowed paths carry data end to end under the policies: exporter -> OpenCost, agent -> exporter,
    # agent -> Thanos Receive; a fresh scrape_success 1 arrives in Thanos.
    deadline = time.monotonic() + 300
    fresh = 0.0
    while time.monotonic() < deadline:
        res = cluster.thanos_query(f'timestamp(cloudtuner_kubecost_scrape_success{{tenant_id="{tenant}"}} == 1)')
        fresh = max((float(r["value"][1]) for r in res), default=0.0)
        if fresh > since:
            break
        time.sleep(5)
    assert fresh > since, f"no scrape_success 1 for {tenant} in Thanos within 5 min under the policies"
    try:
        out = cluster.helm("test", "np", "-n", ns, "--timeout=3m").stdout
    except CommandFailed as exc:
        raise AssertionError(f"helm test under the policies failed: {exc}") from exc
    assert "Succeeded" in out, out
