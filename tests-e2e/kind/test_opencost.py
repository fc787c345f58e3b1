"""Our exported numbers against a REAL cost engine: OpenCost v1.108.0 in the kind cluster, custom price list.

OpenCost (upstream chart, our image), its Prometheus and workloads with known requests come from the session
fixture `opencost_url` (testsupport/opencost.py). This module picks a closed window in which every workload ran
from start to end, waits until OpenCost answers for it, installs our chart with the exporter asking exactly that
window (`allocationExporter.config.window` = an RFC3339 pair; the default "last complete hour minus 15 min"
would make a young cluster wait over an hour), and checks:
  - the exporter's cluster total is OpenCost's own `aggregate=cluster` answer for the same window (0.1 %);
  - each namespace's rate is its requests x the configured prices (tolerances in the test, with why);
  - the series arrive in Thanos under the release's tenant.
The figures are printed (pytest -s) and written to $KCI_CACHE/logs/kind/opencost-figures.json.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from testsupport import opencost as oc
from testsupport.kind import CommandFailed, KindCluster, LocalImages
from testsupport.render import kci_cache

from .conftest import RECEIVE_URL

pytestmark = pytest.mark.kind

RELEASE = "kci-oc"
EXPORTER_SERVICE = f"{RELEASE}-kubecost-integration-exporter"
EXPORTER_PORT = 9103
CLUSTER_LABEL = "kci-opencost"
#: Length of the compared window; longer = smaller share of the start OpenCost does not count (10 s).
WINDOW_MINUTES = int(os.environ.get("KCI_OPENCOST_WINDOW_MINUTES", "10"))
#: How long after the window's end the answer is final: scrape interval 15 s + OpenCost's 1-minute emission loop.
SETTLE = timedelta(seconds=90)
#: The exporter reproduces OpenCost's numbers; only the API's 5-decimal rounding separates them.
REL_EXACT = 1e-3
PREFIX = "cloudtuner_kubecost_"


@dataclass
class Observation:
    """Everything measured once, asserted by the tests below, written out as the run's figures."""

    window: oc.Window
    tenant: str
    resolution_s: float
    prices: oc.PriceList
    expected_rates: dict[str, float]
    namespace_rows: dict[str, dict[str, Any]]
    cluster_rows: dict[str, dict[str, Any]]
    exporter: dict[str, list[tuple[dict[str, str], float]]]
    prometheus_prices: dict[str, tuple[float, float]]
    node_capacity: tuple[float, float]  # cores, bytes (all nodes)
    thanos: dict[str, float] = field(default_factory=dict)

    def exported(self, name: str, **labels: str) -> float:
        return oc.one_value(self.exporter, PREFIX + name, cluster=CLUSTER_LABEL, tenant_id=self.tenant, **labels)


def _started_at(cluster: KindCluster, namespace: str, selector: str = "") -> datetime:
    """Latest container start of the namespace's (selected) pods: nothing there ran before it."""
    args = ["-n", namespace, "get", "pods"] + (["-l", selector] if selector else [])
    latest: datetime | None = None
    for pod in cluster.kubectl_json(*args)["items"]:
        for st in pod["status"].get("containerStatuses") or []:
            running = (st.get("state") or {}).get("running")
            assert running, f"{namespace}/{pod['metadata']['name']} is not running: {st}"
            t = datetime.fromisoformat(running["startedAt"])
            latest = t if latest is None or t > latest else latest
    assert latest is not None, f"no running pods in {namespace} {selector}"
    return latest


def _choose_window(cluster: KindCluster, engine: oc.OpenCostEngine) -> oc.Window:
    """The latest closed window (whole minutes) that starts after everything it measures was up: OpenCost and
    its Prometheus (first scrape, first emission) and every test pod, plus a minute's margin. In a young
    cluster that window lies in the future and we wait for it."""
    ready = max(
        [_started_at(cluster, oc.NAMESPACE), *(_started_at(cluster, ns) for ns in engine.namespaces)]
    ) + timedelta(minutes=1)
    latest_end = (datetime.now(UTC) - SETTLE).replace(second=0, microsecond=0)
    if latest_end - timedelta(minutes=WINDOW_MINUTES) >= ready:
        return oc.Window(latest_end - timedelta(minutes=WINDOW_MINUTES), latest_end)
    return oc.window_after(ready, WINDOW_MINUTES, margin=timedelta(0))


def _exporter_metrics(cluster: KindCluster, ns: str, window: oc.Window, timeout: float = 300) -> Any:
    """The exporter's /metrics once a refresh succeeded for `window`."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            last = cluster.service_get(ns, EXPORTER_SERVICE, EXPORTER_PORT, "/metrics")
            m = oc.parse_metrics(last)
            ok = [v for _, v in m.get(PREFIX + "scrape_success", [])] == [1.0]
            start = [v for _, v in m.get(PREFIX + "window_start_timestamp_seconds", [])]
            if ok and start == [window.start.timestamp()]:
                return m
        except CommandFailed as exc:
            last = str(exc)
        time.sleep(5)
    raise AssertionError(f"exporter has no successful refresh of {window.param} within {timeout:.0f}s:\n{last[-3000:]}")


def _exporter_values(tenant: str, window: oc.Window, url: str) -> dict[str, Any]:
    return {
        "kubecost": {"enabled": False},
        "allocationExporter": {
            "config": {
                "kubecostUrl": url,
                "api": "opencost",
                "tenantId": tenant,
                "clusterName": CLUSTER_LABEL,
                # an RFC3339 pair: the exporter asks exactly this closed window (no data lag applies)
                "window": window.param,
                "refreshInterval": "30s",
            }
        },
        "remoteWrite": {"url": RECEIVE_URL},
    }


def _figures_file() -> Path:
    path = kci_cache() / "logs" / "kind" / "opencost-figures.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def observed(
    kind_cluster: KindCluster,
    thanos: KindCluster,
    opencost_url: str,
    chart_dir: Path,
    images: LocalImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Observation]:
    cluster = kind_cluster
    engine = oc.OpenCostEngine(cluster, images)
    engine.wait_metrics()
    window = _choose_window(cluster, engine)
    print(f"\nOpenCost window: {window.param} ({WINDOW_MINUTES} min); waiting until {oc.rfc3339(window.end + SETTLE)}")
    oc.wait_until(window.end + SETTLE)
    ns_body = engine.wait_allocation(window)
    tenant = f"kind-oc-{int(time.time()) % 1000000}"
    exporter_ns = f"kci-oc-{tenant.rsplit('-', 1)[1]}"
    values = tmp_path_factory.mktemp("opencost") / "values.yaml"
    values.write_text(yaml.safe_dump(_exporter_values(tenant, window, opencost_url)))
    obs: Observation | None = None
    try:
        cluster.load_images(images.exporter, images.prometheus)
        cluster.kubectl("create", "namespace", exporter_ns)
        cluster.helm(
            "install", RELEASE, str(chart_dir), "-n", exporter_ns, "-f", str(values),
            *images.chart_set_args(), "--wait", "--timeout=5m",
        )  # fmt: skip
        metrics = _exporter_metrics(cluster, exporter_ns, window)
        # OpenCost's own answers for the same window, read after the exporter's (a closed window: final data)
        ns_rows = oc.allocation_rows(engine.allocation(window, "namespace"))
        assert oc.allocation_rows(ns_body).keys() == ns_rows.keys()
        cluster_rows = oc.allocation_rows(engine.allocation(window, "cluster"))
        prices: dict[str, tuple[float, float]] = {}
        for metric in ("node_cpu_hourly_cost", "node_ram_hourly_cost"):
            span = f"{int(window.seconds)}s"
            lo = engine.prometheus(f"min(min_over_time({metric}[{span}]))", at=window.end)
            hi = engine.prometheus(f"max(max_over_time({metric}[{span}]))", at=window.end)
            prices[metric] = (float(lo[0]["value"][1]), float(hi[0]["value"][1]))
        nodes = cluster.kubectl_json("get", "nodes")["items"]
        capacity = (
            math.fsum(oc.cpu_cores(n["status"]["capacity"]["cpu"]) for n in nodes),
            math.fsum(oc.memory_bytes(n["status"]["capacity"]["memory"]) for n in nodes),
        )
        obs = Observation(
            window=window,
            tenant=tenant,
            resolution_s=oc.resolution_seconds(),
            prices=oc.PriceList.from_values(),
            expected_rates=oc.expected_namespace_rates(oc.workloads(), oc.PriceList.from_values()),
            namespace_rows=ns_rows,
            cluster_rows=cluster_rows,
            exporter=metrics,
            prometheus_prices=prices,
            node_capacity=capacity,
        )
        yield obs
    finally:
        _write_figures(obs)
        cluster.helm("uninstall", RELEASE, "-n", exporter_ns, "--wait", "--timeout=3m", check=False)
        cluster.delete_namespace(exporter_ns)


def _write_figures(obs: Observation | None) -> None:
    if obs is None:
        return
    w = obs.window
    fig: dict[str, Any] = {
        "window": w.param,
        "window_hours": w.hours,
        "resolution_s": obs.resolution_s,
        "tenant": obs.tenant,
        "prices_per_hour": asdict(obs.prices),
        "prometheus_price_min_max": obs.prometheus_prices,
        "node_capacity": {"cores": obs.node_capacity[0], "bytes": obs.node_capacity[1]},
        "opencost_cluster_rows": {k: {"totalCost": r.get("totalCost"), "minutes": r.get("minutes")}
                                  for k, r in obs.cluster_rows.items()},
        "opencost_cluster_total_usd": oc.total_cost(obs.cluster_rows),
        "opencost_cluster_rate_usd_per_h": oc.total_cost(obs.cluster_rows) / w.hours,
        "namespaces": {},
        "thanos": obs.thanos,
    }  # fmt: skip
    try:
        fig["exporter_cluster_total_usd_per_h"] = obs.exported("cluster_total_cost")
        fig["exporter_cluster_idle_usd_per_h"] = obs.exported("cluster_idle_cost")
    except AssertionError as exc:
        fig["exporter_error"] = str(exc)[:500]
    for ns, expected in obs.expected_rates.items():
        row = obs.namespace_rows.get(ns, {})
        entry: dict[str, Any] = {
            "expected_usd_per_h": expected,
            "opencost_total_usd": row.get("totalCost"),
            "opencost_minutes": row.get("minutes"),
            "opencost_cpu_cost": row.get("cpuCost"),
            "opencost_ram_cost": row.get("ramCost"),
        }
        try:
            entry["exported_usd_per_h"] = obs.exported("namespace_total_cost", namespace=ns)
        except AssertionError as exc:
            entry["exported_error"] = str(exc)[:300]
        fig["namespaces"][ns] = entry
    text = json.dumps(fig, indent=2, default=str)
    _figures_file().write_text(text + "\n")
    print(f"\nOpenCost figures ({_figures_file()}):\n{text}")


def test_price_list_is_in_effect_for_the_whole_window(observed: Observation) -> None:
    """OpenCost emitted the configured hourly prices at every scrape of the window (else nothing below means much)."""
    p = observed.prices
    assert observed.prometheus_prices["node_cpu_hourly_cost"] == (p.cpu_core_hour, p.cpu_core_hour)
    assert observed.prometheus_prices["node_ram_hourly_cost"] == (p.ram_gib_hour, p.ram_gib_hour)


def test_exporter_cluster_total_is_opencost_cluster_answer(observed: Observation) -> None:
    w = observed.window
    # the exporter covered exactly the window (rate mode divides by its hours)
    assert observed.exported("window_start_timestamp_seconds") == w.start.timestamp()
    assert observed.exported("window_end_timestamp_seconds") == w.end.timestamp()
    opencost_rate = oc.total_cost(observed.cluster_rows) / w.hours
    assert opencost_rate > 0
    exported = observed.exported("cluster_total_cost")
    assert math.isclose(exported, opencost_rate, rel_tol=REL_EXACT), (exported, opencost_rate, observed.cluster_rows)
    # idle is OpenCost's __idle__ row (OpenCost v1.108.0 ignores shareIdle: idle stays a row of its own)
    idle_rows = {k: r for k, r in observed.cluster_rows.items() if oc.IDLE in k}
    assert idle_rows, f"no {oc.IDLE} row in OpenCost's answer: {sorted(observed.cluster_rows)}"
    idle = oc.total_cost(idle_rows) / w.hours
    assert math.isclose(observed.exported("cluster_idle_cost"), idle, rel_tol=REL_EXACT, abs_tol=1e-6)
    # sum(namespaces) + idle == cluster, on the exported series
    ns_sum = math.fsum(v for lab, v in observed.exporter[PREFIX + "namespace_total_cost"])
    assert math.isclose(ns_sum + observed.exported("cluster_idle_cost"), exported, rel_tol=1e-9)


def test_cluster_total_is_the_node_price(observed: Observation) -> None:
    """With idle included, the cluster costs what its nodes cost (allocations + idle = node CPU/RAM/GPU cost):
    capacity x prices, the price list end to end. Tolerance: OpenCost samples a node's running time at
    max(its resolution, 1 min) (ClusterNodes raises resolutions under 60 s to 1 min), and the first step of
    the window is not counted (oc.uncounted_start_seconds): up to 1 min of the window."""
    w = observed.window
    cores, mem = observed.node_capacity
    node_rate = observed.prices.node_hourly(cores, mem)
    exported = observed.exported("cluster_total_cost")
    lost = oc.uncounted_start_seconds(max(observed.resolution_s, 60.0)) / w.seconds
    assert node_rate * (1 - lost) * (1 - REL_EXACT) <= exported <= node_rate * (1 + REL_EXACT), (
        exported, node_rate, lost,
    )  # fmt: skip


def test_namespace_costs_are_requests_times_prices(observed: Observation) -> None:
    """Per test namespace, three checks that can each fail:
    1. exporter == OpenCost's namespace row / window hours (0.1 %: the API's 5-decimal rounding);
    2. OpenCost's cost per RUNNING hour (its `minutes`) == replicas x (CPU x price + GiB x price) (0.1 %): the
       pods sleep, so OpenCost's max(request, usage) is the request, and prices are constant (test above);
    3. end to end, exported rate in [expected x (1 - u/W), expected] (+0.1 %), W = the window, u = the start
       of the window OpenCost does not count as running time (oc.uncounted_start_seconds: Prometheus 3's
       left-open subquery drops the step at the window start, OpenCost rounds sample times to 10 s; 10 s at
       the configured 10 s resolution). The pods ran the whole window, so nothing else may be missing.
    """
    w = observed.window
    lost = oc.uncounted_start_seconds(observed.resolution_s) / w.seconds
    assert observed.expected_rates, sorted(observed.namespace_rows)
    assert set(observed.expected_rates) <= set(observed.namespace_rows), sorted(observed.namespace_rows)
    for ns, expected in observed.expected_rates.items():
        row = observed.namespace_rows[ns]
        exported = observed.exported("namespace_total_cost", namespace=ns)
        total = float(row["totalCost"])
        assert math.isclose(exported, total / w.hours, rel_tol=REL_EXACT), (ns, exported, total, w.hours)
        minutes = float(row["minutes"])
        # (minutes come rounded to 5 decimals)
        assert w.seconds / 60 * (1 - lost) - 1e-4 <= minutes <= w.seconds / 60 + 1e-4, (ns, minutes, w.param)
        per_running_hour = total / (minutes / 60)
        assert math.isclose(per_running_hour, expected, rel_tol=REL_EXACT), (ns, per_running_hour, expected, row)
        assert expected * (1 - lost) * (1 - REL_EXACT) <= exported <= expected * (1 + REL_EXACT), (
            ns, exported, expected, lost,
        )  # fmt: skip


def test_series_reach_thanos_for_the_tenant(observed: Observation, thanos: KindCluster) -> None:
    t = observed.tenant
    sel = f'cluster="{CLUSTER_LABEL}",tenant_id="{t}"'
    total = thanos.wait_thanos(f"{PREFIX}cluster_total_cost{{{sel}}}", tenant=t, timeout=300)
    assert len(total) == 1, total
    observed.thanos["cluster_total_cost"] = float(total[0]["value"][1])
    assert math.isclose(observed.thanos["cluster_total_cost"], observed.exported("cluster_total_cost"), rel_tol=1e-12)
    ns_series = thanos.wait_thanos(f"{PREFIX}namespace_total_cost{{{sel}}}", tenant=t, timeout=120)
    by_ns = {s["metric"]["namespace"]: float(s["value"][1]) for s in ns_series}
    for ns in observed.expected_rates:
        assert ns in by_ns, sorted(by_ns)
        observed.thanos[f"namespace_total_cost/{ns}"] = by_ns[ns]
        exported = observed.exported("namespace_total_cost", namespace=ns)
        assert math.isclose(by_ns[ns], exported, rel_tol=1e-12), (ns, by_ns[ns], exported)
    # Receive filed them under the header's tenant: the tenant_id label is the one the release was given
    assert {s["metric"]["tenant_id"] for s in [*total, *ns_series]} == {t}
    _write_figures(observed)
