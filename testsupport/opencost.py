"""OpenCost v1.108.0 as the real cost engine in the kind cluster, and what its numbers must be.

`OpenCostEngine(cluster, images).install()` deploys, in namespace `opencost`:
  - a Prometheus 3 (our image) scraping cAdvisor through the kubelets and OpenCost's own /metrics
    (tests-e2e/kind/opencost/prometheus.yaml);
  - OpenCost from the REAL upstream chart `opencost-2.5.17.tgz` (found through `KCI_UPSTREAM_CHARTS`, default the
    `shared/upstream-charts` directory beside the repository's parent) with our image and the custom price list
    of tests-e2e/kind/opencost/opencost-values.yaml;
  - test workloads with known requests in three namespaces (tests-e2e/kind/opencost/workloads.yaml).
`uninstall()` removes all of it. The API and Prometheus are read through the API server's service proxy
(`kubectl get --raw .../services/<svc>:<port>/proxy/...`): no port-forward process to start or stop.

The expected costs come from the same files the cluster gets: `PriceList.from_values()` reads the price list the
way OpenCost does (monthly prices / 730 h, printed with 6 decimals) and `workloads()` reads the requests.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import string
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from testsupport.kind import CommandFailed, KindCluster, LocalImages
from testsupport.render import CHART_DIR

ROOT = CHART_DIR.parent.parent
MANIFEST_DIR = ROOT / "tests-e2e" / "kind" / "opencost"
PROMETHEUS_MANIFEST = MANIFEST_DIR / "prometheus.yaml"
VALUES_FILE = MANIFEST_DIR / "opencost-values.yaml"
WORKLOADS_MANIFEST = MANIFEST_DIR / "workloads.yaml"

NAMESPACE = "opencost"
RELEASE = "opencost"
#: The chart names the Service `<release>` when the release name contains "opencost".
SERVICE = "opencost"
API_PORT = 9003
PROMETHEUS_SERVICE = "opencost-prometheus"
PROMETHEUS_PORT = 9090
UPSTREAM_CHART = "opencost-2.5.17.tgz"
#: In-cluster base URL of the OpenCost API (what the exporter is pointed at).
IN_CLUSTER_URL = f"http://{SERVICE}.{NAMESPACE}.svc:{API_PORT}"

#: OpenCost turns the ConfigMap's monthly prices into hourly ones with this many hours.
HOURS_PER_MONTH = 730.0
GIB = 1024.0**3
IDLE = "__idle__"


# ---------------------------------------------------------------------------------------------------
# where things are


def upstream_charts_dir() -> Path:
    """`$KCI_UPSTREAM_CHARTS`, or `shared/upstream-charts` beside the repository's parent directory."""
    env = os.environ.get("KCI_UPSTREAM_CHARTS")
    return Path(env) if env else ROOT.parent / "shared" / "upstream-charts"


def upstream_chart() -> Path:
    """The real OpenCost chart archive; FileNotFoundError (with the variable to set) when it is missing."""
    path = upstream_charts_dir() / UPSTREAM_CHART
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: set KCI_UPSTREAM_CHARTS to the directory holding {UPSTREAM_CHART}")
    return path


# ---------------------------------------------------------------------------------------------------
# the price list and the workloads: what the costs must be


def opencost_hourly(monthly: str | float) -> float:
    """A ConfigMap price per month as OpenCost stores it per hour: `fmt.Sprintf("%f", v/730)` (6 decimals)."""
    return float(f"{float(monthly) / HOURS_PER_MONTH:f}")


@dataclass(frozen=True)
class PriceList:
    """Hourly USD prices OpenCost uses (custom provider)."""

    cpu_core_hour: float
    ram_gib_hour: float
    storage_gib_hour: float
    gpu_hour: float

    @classmethod
    def from_values(cls, path: Path = VALUES_FILE) -> PriceList:
        model = yaml.safe_load(path.read_text())["opencost"]["customPricing"]["costModel"]
        return cls(
            cpu_core_hour=opencost_hourly(model["CPU"]),
            ram_gib_hour=opencost_hourly(model["RAM"]),
            storage_gib_hour=opencost_hourly(model["storage"]),
            gpu_hour=opencost_hourly(model["GPU"]),
        )

    def node_hourly(self, cores: float, memory_bytes: float) -> float:
        return cores * self.cpu_core_hour + memory_bytes / GIB * self.ram_gib_hour


def resolution_seconds(path: Path = VALUES_FILE) -> float:
    """OpenCost v1.108.0's query resolution as configured (ETL_RESOLUTION_SECONDS; OpenCost's default 300)."""
    env = yaml.safe_load(path.read_text())["opencost"]["exporter"].get("extraEnv") or {}
    return float(env.get("ETL_RESOLUTION_SECONDS", 300))


def uncounted_start_seconds(resolution_s: float) -> float:
    """How much of a window's start OpenCost v1.108.0 may not count as running time for something that ran
    the whole window (window start a multiple of the resolution, as `Window`s here are).

    OpenCost takes a pod's (or node's) start from the first sample of a subquery
    `...[<window>:<resolution>]` evaluated at the window's end. Prometheus 3 subqueries are left-open, so the
    step at the window start is left out and the first sample is one resolution later; OpenCost then rounds
    sample timestamps to 10 s (pkg/prom/result.go, `math.Round(t/10)*10`). Measured in the kind cluster:
    resolution 5 s -> 10 s, 15 s -> 20 s, 60 s -> 60 s not counted.
    """
    return 10.0 * math.floor(resolution_s / 10.0 + 0.5)


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEM = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEM_UNITS = {
    None: 1.0,
    "Ki": 1024.0,
    "Mi": 1024.0**2,
    "Gi": 1024.0**3,
    "Ti": 1024.0**4,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
}


def cpu_cores(quantity: str | float) -> float:
    m = _CPU.match(str(quantity))
    if not m:
        raise ValueError(f"unsupported CPU quantity {quantity!r}")
    return float(m.group(1)) / (1000.0 if m.group(2) else 1.0)


def memory_bytes(quantity: str | float) -> float:
    m = _MEM.match(str(quantity))
    if not m:
        raise ValueError(f"unsupported memory quantity {quantity!r}")
    return float(m.group(1)) * _MEM_UNITS[m.group(2)]


@dataclass(frozen=True)
class Workload:
    """One Deployment of the test workloads: per-pod requests (summed over containers)."""

    namespace: str
    name: str
    replicas: int
    cpu_cores: float
    memory_bytes: float

    def hourly_cost(self, prices: PriceList) -> float:
        return self.replicas * prices.node_hourly(self.cpu_cores, self.memory_bytes)


def workloads(path: Path = WORKLOADS_MANIFEST) -> list[Workload]:
    """The Deployments of the workloads manifest. Requests must equal limits (so usage can never bill more)."""
    out: list[Workload] = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "Deployment":
            continue
        cpu = mem = 0.0
        for c in doc["spec"]["template"]["spec"]["containers"]:
            res = c["resources"]
            if res["requests"] != res["limits"]:
                raise ValueError(f"{doc['metadata']['name']}/{c['name']}: requests must equal limits")
            cpu += cpu_cores(res["requests"]["cpu"])
            mem += memory_bytes(res["requests"]["memory"])
        out.append(
            Workload(
                namespace=doc["metadata"]["namespace"],
                name=doc["metadata"]["name"],
                replicas=int(doc["spec"].get("replicas", 1)),
                cpu_cores=cpu,
                memory_bytes=mem,
            )
        )
    return out


def workload_namespaces(path: Path = WORKLOADS_MANIFEST) -> list[str]:
    return sorted({w.namespace for w in workloads(path)})


def expected_namespace_rates(items: Sequence[Workload], prices: PriceList) -> dict[str, float]:
    """USD per hour each namespace costs while its pods run: replicas x (CPU x price + GiB x price)."""
    out: dict[str, float] = {}
    for w in items:
        out[w.namespace] = out.get(w.namespace, 0.0) + w.hourly_cost(prices)
    return out


# ---------------------------------------------------------------------------------------------------
# windows and answers


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def param(self) -> str:
        """The `window` parameter (an RFC3339 pair), as the exporter sends it too."""
        return f"{rfc3339(self.start)},{rfc3339(self.end)}"

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_after(ready_at: datetime, minutes: int, margin: timedelta = timedelta(seconds=30)) -> Window:
    """A window of `minutes` starting at the first whole minute after `ready_at + margin`."""
    t = (ready_at + margin).astimezone(UTC)
    start = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return Window(start, start + timedelta(minutes=minutes))


def allocation_rows(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The one accumulated set of an `/allocation` answer (key -> allocation). Asserts the answer is a success."""
    assert body.get("code") == 200, f"OpenCost answered {str(body)[:500]}"
    data = body.get("data")
    assert isinstance(data, list), f"expected one accumulated set, got {str(data)[:500]}"
    assert len(data) == 1, f"expected one accumulated set, got {str(data)[:500]}"
    assert isinstance(data[0], dict), f"expected one accumulated set, got {str(data)[:500]}"
    rows: dict[str, dict[str, Any]] = data[0]
    return rows


def total_cost(rows: Mapping[str, Mapping[str, Any]]) -> float:
    """Sum of totalCost over every row, idle included (OpenCost's own cluster total)."""
    return math.fsum(float(r["totalCost"]) for r in rows.values())


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Exposition text -> metric name -> [(labels, value)] (prometheus_client's parser)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def one_value(metrics: Mapping[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The single sample of `name` whose labels include `labels`."""
    found = [v for lab, v in metrics.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, f"{name}{labels}: expected one sample, found {found} (all: {metrics.get(name)})"
    return found[0]


# ---------------------------------------------------------------------------------------------------
# the engine in the cluster


def render_manifest(path: Path, images: LocalImages) -> str:
    """A manifest with `${PROMETHEUS_IMAGE}`/`${DEBIAN_IMAGE}` replaced (all other `$` must not occur)."""
    return string.Template(path.read_text()).substitute(PROMETHEUS_IMAGE=images.prometheus, DEBIAN_IMAGE=images.debian)


class OpenCostEngine:
    """OpenCost + its Prometheus + the test workloads in a KindCluster."""

    def __init__(self, cluster: KindCluster, images: LocalImages, cluster_id: str = "kci") -> None:
        self.cluster = cluster
        self.images = images
        self.cluster_id = cluster_id
        self.namespaces = workload_namespaces()

    # -- install / uninstall

    def install(self, timeout: str = "300s") -> None:
        c = self.cluster
        c.load_images(self.images.opencost, self.images.prometheus, self.images.debian)
        c.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))
        c.apply(render_manifest(PROMETHEUS_MANIFEST, self.images))
        # OpenCost reads Prometheus' config (scrape interval) once at start: let it find a ready Prometheus
        c.wait_rollout(NAMESPACE, f"deployment/{PROMETHEUS_SERVICE}", timeout=timeout)
        c.helm(
            "upgrade", "--install", RELEASE, str(upstream_chart()),
            "--namespace", NAMESPACE,
            "-f", str(VALUES_FILE),
            f"--set-string=opencost.exporter.image.fullImageName={self.images.opencost}",
            "--set-string=opencost.exporter.image.pullPolicy=Never",
            f"--set-string=opencost.exporter.defaultClusterId={self.cluster_id}",
            "--wait", f"--timeout={timeout}",
        )  # fmt: skip
        c.apply(render_manifest(WORKLOADS_MANIFEST, self.images))
        c.wait_rollout(NAMESPACE, f"deployment/{SERVICE}", timeout=timeout)
        for w in workloads():
            c.wait_rollout(w.namespace, f"deployment/{w.name}", timeout=timeout)

    def uninstall(self) -> None:
        """Remove everything install() made; tolerant of a half-done install."""
        c = self.cluster
        c.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--ignore-not-found", check=False)
        c.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", check=False,
                  stdin=render_manifest(PROMETHEUS_MANIFEST, self.images))  # fmt: skip
        for ns in [*self.namespaces, NAMESPACE]:
            c.delete_namespace(ns)

    # -- reading the API and Prometheus

    def get(self, service: str, port: int, path: str, params: Mapping[str, str] | None = None) -> str:
        return self.cluster.service_get(NAMESPACE, service, port, path, params)

    def allocation(self, window: Window | str, aggregate: str, **params: str) -> dict[str, Any]:
        """One `/allocation` answer (accumulated, idle included), as the exporter asks it."""
        w = window.param if isinstance(window, Window) else window
        query = {"window": w, "aggregate": aggregate, "accumulate": "true", "includeIdle": "true", **params}
        body: dict[str, Any] = json.loads(self.get(SERVICE, API_PORT, "/allocation", query))
        return body

    def prometheus(self, promql: str, at: datetime | None = None) -> list[dict[str, Any]]:
        query = {"query": promql}
        if at is not None:
            query["time"] = f"{at.timestamp():.3f}"
        body = json.loads(self.get(PROMETHEUS_SERVICE, PROMETHEUS_PORT, "/api/v1/query", query))
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_metrics(self, timeout: float = 300, interval: float = 10) -> datetime:
        """Wait until Prometheus holds what OpenCost needs for every test namespace (its own price, allocation and
        KSM-style series, cAdvisor usage) and the price is the configured one. Returns when that was true."""
        prices = PriceList.from_values()
        ns_re = "|".join(self.namespaces)
        checks = {
            "node price": "node_cpu_hourly_cost",
            "pods running": f'count by (namespace) (kube_pod_container_status_running{{namespace=~"{ns_re}"}} == 1)',
            "cpu allocation": f'count by (namespace) (container_cpu_allocation{{namespace=~"{ns_re}"}})',
            "cAdvisor usage": "count by (namespace) "
                f'(container_cpu_usage_seconds_total{{namespace=~"{ns_re}",container!=""}})',
        }  # fmt: skip
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = {name: self.prometheus(q) for name, q in checks.items()}
            except (CommandFailed, ValueError, KeyError) as exc:
                last = {"error": repr(exc)}
            else:
                price_ok = bool(last["node price"]) and all(
                    math.isclose(float(r["value"][1]), prices.cpu_core_hour) for r in last["node price"]
                )
                per_ns_ok = all(
                    {r["metric"].get("namespace") for r in last[k]} >= set(self.namespaces)
                    for k in ("pods running", "cpu allocation", "cAdvisor usage")
                )
                if price_ok and per_ns_ok:
                    return datetime.now(UTC)
            time.sleep(interval)
        raise AssertionError(f"OpenCost's Prometheus is not complete within {timeout:.0f}s; last answers: {last}")

    def wait_allocation(self, window: Window, timeout: float = 300, interval: float = 10) -> dict[str, Any]:
        """Poll `/allocation?aggregate=namespace` for `window` until every test namespace has a positive cost."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                body = self.allocation(window, "namespace")
                rows = allocation_rows(body)
                if all(float(rows.get(ns, {}).get("totalCost") or 0) > 0 for ns in self.namespaces):
                    return body
                last = sorted(rows)
            except (CommandFailed, AssertionError, ValueError) as exc:
                last = repr(exc)[:600]
            time.sleep(interval)
        raise AssertionError(f"/allocation for {window.param} lacks {self.namespaces} after {timeout:.0f}s: {last}")

    def logs(self, tail: int = 60) -> str:
        proc = self.cluster.kubectl("-n", NAMESPACE, "logs", f"deployment/{SERVICE}", f"--tail={tail}", check=False)
        return proc.stdout + proc.stderr


@contextlib.contextmanager
def installed(cluster: KindCluster, images: LocalImages | None = None) -> Iterator[str]:
    """OpenCost, its Prometheus and the test workloads, ready (Prometheus holds OpenCost's series and the
    configured price for every test namespace); yields OpenCost's in-cluster URL; uninstalls at the end."""
    engine = OpenCostEngine(cluster, images or LocalImages.current())
    try:
        engine.install()
        engine.wait_metrics()
        yield IN_CLUSTER_URL
    except BaseException:
        print(f"--- OpenCost logs (tail)\n{engine.logs()}")
        raise
    finally:
        engine.uninstall()


def wait_until(t: datetime) -> None:
    """Sleep until wall-clock time `t` (UTC)."""
    delay = (t - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)
