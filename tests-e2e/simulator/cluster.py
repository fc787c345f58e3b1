"""The synthetic cluster behind the Kubecost API simulator (a test double): nodes, workloads, prices.

Everything here is static and deterministic. `model.py` turns it into allocations for a window: each container
costs `max(request, usage) x price x hours`, idle is node capacity cost minus what the containers were allocated.
The default cluster mirrors the original deployment: eight namespaces on two 2-vCPU/8-GiB nodes, about
$0.27/hour in total (idle, one load balancer, a few PVs and some egress included).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

GIB = 1024.0**3

DEFAULT_NAMESPACES = (
    "argocd",
    "cert-manager",
    "default",
    "ingress-nginx",
    "kube-state-metrics",
    "kube-system",
    "kubecost",
    "kubecost-dev",
)


@dataclass(frozen=True)
class Prices:
    """On-demand list prices in USD (Kubecost's defaults are of this order)."""

    cpu_core_hour: float = 0.0400
    ram_gib_hour: float = 0.0048
    pv_gib_hour: float = 0.04 / 730.0
    lb_hour: float = 0.025
    network_gib: float = 0.12  # internet egress


@dataclass(frozen=True)
class Node:
    name: str
    cpu_cores: float
    ram_gib: float
    provider_id: str


@dataclass(frozen=True)
class Workload:
    """A controller (or a bare pod when `kind` is None) and what each of its pods requests and uses."""

    namespace: str
    kind: str | None  # deployment, statefulset, daemonset, job or None (bare pod)
    name: str
    cpu_request: float  # cores per pod
    cpu_usage: float
    ram_request_gib: float
    ram_usage_gib: float
    replicas: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    pv_gib: float = 0.0  # one PVC per pod (statefulset style)
    egress_gib_hour: float = 0.0  # per pod
    load_balancer: str | None = None  # Service name of a LoadBalancer fronting the workload
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class Container:
    """One running container: the unit every aggregation is built from."""

    cluster: str
    node: Node
    namespace: str
    pod: str
    container: str
    controller_kind: str | None
    controller: str | None
    labels: dict[str, str]
    services: tuple[str, ...]
    cpu_request: float
    cpu_usage: float
    ram_request_bytes: float
    ram_usage_bytes: float
    pvs: tuple[tuple[str, float], ...]  # (pv name, bytes)
    egress_bytes_hour: float
    load_balancer: str | None


@dataclass(frozen=True)
class SyntheticCluster:
    name: str
    nodes: tuple[Node, ...]
    workloads: tuple[Workload, ...]
    prices: Prices = Prices()
    #: Data exists from this instant on (earlier windows come back empty).
    created: datetime = datetime(2025, 1, 1, tzinfo=UTC)

    def containers(self) -> list[Container]:
        out: list[Container] = []
        slot = 0
        for wl in self.workloads:
            if wl.kind == "daemonset":
                placements = [(n, f"{wl.name}-{_suffix(wl.name + n.name, 5)}") for n in self.nodes]
            else:
                placements = []
                for i in range(wl.replicas):
                    node = self.nodes[slot % len(self.nodes)]
                    slot += 1
                    if wl.kind == "statefulset":
                        pod = f"{wl.name}-{i}"
                    elif wl.kind is None:
                        pod = wl.name
                    else:
                        pod = f"{wl.name}-{_suffix(wl.name, 10)}-{_suffix(wl.name + str(i), 5)}"
                    placements.append((node, pod))
            for node, pod in placements:
                pvs: tuple[tuple[str, float], ...] = ()
                if wl.pv_gib:
                    pvs = ((f"pvc-{_suffix(pod, 8)}-{_suffix(wl.namespace + pod, 4)}", wl.pv_gib * GIB),)
                out.append(
                    Container(
                        cluster=self.name,
                        node=node,
                        namespace=wl.namespace,
                        pod=pod,
                        container=wl.name.removeprefix(wl.namespace + "-") or wl.name,
                        controller_kind=wl.kind,
                        controller=wl.name if wl.kind else None,
                        labels=dict(wl.labels),
                        services=wl.services,
                        cpu_request=wl.cpu_request,
                        cpu_usage=wl.cpu_usage,
                        ram_request_bytes=wl.ram_request_gib * GIB,
                        ram_usage_bytes=wl.ram_usage_gib * GIB,
                        pvs=pvs,
                        egress_bytes_hour=wl.egress_gib_hour * GIB,
                        # The LB is billed once, on the first pod of the workload.
                        load_balancer=wl.load_balancer if pod == placements[0][1] else None,
                    )
                )
        return out

    def namespaces(self) -> list[str]:
        return sorted({w.namespace for w in self.workloads})


def _suffix(seed: str, n: int) -> str:
    """Deterministic pod-hash-like suffix."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:n])


def _labels(app: str, team: str | None = None) -> dict[str, str]:
    # Kubecost reports label keys Prometheus-sanitized (`app.kubernetes.io/name` -> `app_kubernetes_io_name`).
    out = {"app": app, "app_kubernetes_io_name": app}
    if team:
        out["team"] = team
    return out


def default_cluster(name: str = "cluster-one") -> SyntheticCluster:
    """Eight namespaces at about $0.27/hour on two nodes (see module docstring)."""
    nodes = (
        Node("node-a", 2.0, 8.0, "gce://demo/europe-west1-b/node-a"),
        Node("node-b", 2.0, 8.0, "gce://demo/europe-west1-c/node-b"),
    )
    plat, finops = "platform", "finops"
    workloads = (
        # argocd
        Workload(
            "argocd", "deployment", "argocd-server", 0.10, 0.020, 0.25, 0.12, labels=_labels("argocd-server", plat)
        ),
        Workload(
            "argocd",
            "deployment",
            "argocd-repo-server",
            0.10,
            0.030,
            0.25,
            0.20,
            labels=_labels("argocd-repo-server", plat),
        ),
        Workload(
            "argocd",
            "statefulset",
            "argocd-application-controller",
            0.25,
            0.150,
            0.50,
            0.45,
            labels=_labels("argocd-application-controller", plat),
        ),
        Workload(
            "argocd", "deployment", "argocd-redis", 0.05, 0.005, 0.0625, 0.02, labels=_labels("argocd-redis", plat)
        ),
        # cert-manager
        Workload(
            "cert-manager",
            "deployment",
            "cert-manager",
            0.01,
            0.002,
            0.03125,
            0.03,
            labels=_labels("cert-manager", plat),
        ),
        Workload(
            "cert-manager",
            "deployment",
            "cert-manager-cainjector",
            0.01,
            0.003,
            0.0625,
            0.05,
            labels=_labels("cainjector", plat),
        ),
        Workload(
            "cert-manager",
            "deployment",
            "cert-manager-webhook",
            0.01,
            0.001,
            0.03125,
            0.015,
            labels=_labels("webhook", plat),
        ),
        # default: a forgotten bare debug pod, no controller, no team, no CPU use
        Workload("default", None, "debug-shell", 0.01, 0.0, 0.015625, 0.001, labels={"run": "debug-shell"}),
        # ingress-nginx: the only LoadBalancer, most of the egress
        Workload(
            "ingress-nginx",
            "deployment",
            "ingress-nginx-controller",
            0.10,
            0.020,
            0.09,
            0.10,
            labels=_labels("ingress-nginx", plat),
            egress_gib_hour=0.05,
            load_balancer="ingress-nginx-controller",
            services=("ingress-nginx-controller",),
        ),
        # kube-state-metrics
        Workload(
            "kube-state-metrics",
            "deployment",
            "kube-state-metrics",
            0.01,
            0.004,
            0.0625,
            0.035,
            labels=_labels("kube-state-metrics", plat),
            services=("kube-state-metrics",),
        ),
        # kube-system: kube-proxy requests no memory (efficiency rule: usage without request -> 1.0)
        Workload("kube-system", "daemonset", "kube-proxy", 0.10, 0.005, 0.0, 0.02, labels={"k8s_app": "kube-proxy"}),
        Workload(
            "kube-system",
            "deployment",
            "coredns",
            0.10,
            0.003,
            0.0703125,
            0.02,
            replicas=2,
            labels={"k8s_app": "kube-dns"},
            services=("kube-dns",),
        ),
        Workload(
            "kube-system", "daemonset", "fluentbit-gke", 0.10, 0.010, 0.10, 0.05, labels={"k8s_app": "fluentbit-gke"}
        ),
        # kubecost: memory use above request (ramEfficiency > 1), PVs
        Workload(
            "kubecost",
            "deployment",
            "kubecost-cost-analyzer",
            0.20,
            0.050,
            0.50,
            0.60,
            labels=_labels("cost-analyzer", finops),
            egress_gib_hour=0.01,
            services=("kubecost-cost-analyzer",),
        ),
        Workload(
            "kubecost",
            "statefulset",
            "kubecost-prometheus-server",
            0.20,
            0.100,
            1.0,
            0.80,
            labels=_labels("prometheus", finops),
            pv_gib=32.0,
        ),
        Workload(
            "kubecost",
            "statefulset",
            "kubecost-aggregator",
            0.20,
            0.050,
            0.50,
            0.40,
            labels=_labels("aggregator", finops),
            pv_gib=8.0,
        ),
        # kubecost-dev
        Workload(
            "kubecost-dev",
            "deployment",
            "kubecost-cost-analyzer",
            0.10,
            0.020,
            0.25,
            0.20,
            labels=_labels("cost-analyzer", finops),
            pv_gib=8.0,
        ),
    )
    return SyntheticCluster(name=name, nodes=nodes, workloads=workloads)
