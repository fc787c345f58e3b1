"""Pipeline e2e: Kubecost API simulator -> exporter -> Prometheus agent -> Thanos Receive, read via Thanos Query.

Everything runs as local processes from the chart's rendered config (`testsupport.pipeline`): the exporter with
the rendered Deployment's env, the agent with the rendered `prometheus.yml`, only addresses and intervals made
local. Two tenants share one Thanos: A with the chart's defaults (idle shared, weighted), B with `shareIdle: none`
and a simulator at half the cost. Every assertion reads Thanos, the way the platform's backend will.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from testsupport.pipeline import (
    METRIC_PREFIX,
    RECEIVE_LABEL,
    Tenant,
    TenantSpec,
    Thanos,
    start_tenant,
    start_thanos,
    wait_for_data,
)
from testsupport.procs import PortInUse, Ports, ProcessGroup, StartupError, ToolMissing, http_json, wait_until

pytestmark = pytest.mark.e2e

TENANT_A = TenantSpec("e2e-tenant-a", "e2e-cluster-a")
TENANT_B = TenantSpec(
    "e2e-tenant-b", "e2e-cluster-b", values={"allocationExporter": {"config": {"shareIdle": "none"}}}, sim_scale=0.5
)
NAMESPACES = {
    "argocd",
    "cert-manager",
    "default",
    "ingress-nginx",
    "kube-state-metrics",
    "kube-system",
    "kubecost",
    "kubecost-dev",
}
REL = 1e-3  # "values within 0.1 % of the simulator's own answer"

# The metric contract with the platform (docs/metrics.md): series every healthy exporter must export.
CLUSTER_COSTS = ("total", "cpu", "ram", "pv", "network", "lb", "gpu", "shared", "idle")
NAMESPACE_COSTS = ("total", "cpu", "ram", "pv", "network", "lb", "gpu", "shared")
EFFICIENCIES = ("cpu", "ram", "total")
CONTRACT = (
    [f"cluster_{c}_cost" for c in CLUSTER_COSTS]
    + [f"cluster_{e}_efficiency" for e in EFFICIENCIES]
    + [f"namespace_{c}_cost" for c in NAMESPACE_COSTS]
    + [f"namespace_{e}_efficiency" for e in EFFICIENCIES]
    + ["scrape_success", "scrape_duration_seconds", "scrape_errors_total", "last_success_timestamp_seconds"]
    + ["exporter_info", "exported_namespaces"]
)
NAMESPACE_SERIES = {n for n in CONTRACT if n.startswith("namespace_")}


@dataclass
class Stack:
    group: ProcessGroup
    thanos: Thanos
    a: Tenant
    b: Tenant


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Thanos once per session, two tenants on it; every process is stopped at teardown."""
    group = ProcessGroup(tmp_path_factory.mktemp("pipeline"))
    failure = ""
    try:
        ports = Ports()
        thanos = start_thanos(group, ports)
        a = start_tenant(group, ports, thanos, TENANT_A)
        b = start_tenant(group, ports, thanos, TENANT_B)
        wait_for_data(thanos, a, group)
        wait_for_data(thanos, b, group)
    except (ToolMissing, PortInUse) as err:
        failure = str(err)
    except (StartupError, AssertionError, OSError, RuntimeError) as err:
        failure = (
            f"pipeline did not come up: {err}\n\nprocess logs (in {group.workdir / 'logs'}):\n{group.logs_report()}"
        )
    if failure:
        group.stop_all()
        pytest.fail(failure, pytrace=False)
    yield Stack(group, thanos, a, b)
    group.stop_all()


@pytest.fixture(autouse=True)
def _all_processes_alive(request: pytest.FixtureRequest) -> None:
    if "pipeline" in request.fixturenames:
        stack: Stack = request.getfixturevalue("pipeline")
        stack.group.check_alive()


def _sel(tenant: Tenant, **extra: str) -> str:
    labels = {"tenant_id": tenant.spec.tenant_id, **extra}
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _by(thanos: Thanos, metric: str, tenant: Tenant, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in thanos.query(f"{METRIC_PREFIX}{metric}{_sel(tenant)}"):
        key = r["metric"].get(label, "")
        assert key not in out, f"{metric} has two series for {label}={key!r}: {r['metric']}"
        out[key] = float(r["value"][1])
    return out


def _one(thanos: Thanos, metric: str, tenant: Tenant) -> float:
    v = thanos.value(f"{METRIC_PREFIX}{metric}{_sel(tenant)}")
    assert v is not None, f"{METRIC_PREFIX}{metric}{_sel(tenant)} is not in Thanos"
    return v


# ---------------------------------------------------------------------------------------------------------
# What the simulator itself says, for the exporter's own query


def _exporter_query(tenant: Tenant) -> tuple[str, dict[str, str]]:
    """Path and parameters of the exporter's latest successful allocation request to its simulator."""
    for req in reversed(tenant.sim_requests(200)):
        if req["status"] == 200 and req["fault"] == "none":
            return req["path"], dict(req["params"])
    raise AssertionError(f"the exporter of {tenant.spec.tenant_id} never queried its simulator successfully")


def _sim_rows(tenant: Tenant, aggregate: str) -> tuple[dict[str, dict[str, Any]], float]:
    """Rows of the exporter's query re-aggregated by `aggregate` (one merged set), and the window's hours."""
    path, params = _exporter_query(tenant)
    params["aggregate"] = aggregate
    query = "&".join(f"{k}={v}" for k, v in params.items())
    doc = http_json(f"{tenant.sim_url}{path}?{query}")
    sets = [s for s in doc["data"] if s]
    assert len(sets) == 1, f"expected one set for {params}, got {len(sets)}"
    rows = sets[0]
    window = next(iter(rows.values()))["window"]
    hours = (_t(window["end"]) - _t(window["start"])).total_seconds() / 3600
    return rows, hours


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _cost(row: dict[str, Any], field: str) -> float:
    adj = row.get(f"{field}Adjustment") or 0.0
    return float(row[field] or 0.0) + float(adj)


# ---------------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("which", ["a", "b"])
def test_every_contract_series_reaches_thanos(pipeline: Stack, which: str) -> None:
    tenant: Tenant = getattr(pipeline, which)
    names = set(pipeline.thanos.names(_sel(tenant)))
    missing = [m for m in CONTRACT if METRIC_PREFIX + m not in names]
    assert not missing, f"contract series missing in Thanos for {tenant.spec.tenant_id}: {missing}"
    for metric in NAMESPACE_SERIES:
        got = set(_by(pipeline.thanos, metric, tenant, "namespace"))
        assert got >= NAMESPACES, f"{metric}: namespaces missing {NAMESPACES - got}"
    assert "__idle__" not in set(_by(pipeline.thanos, "namespace_total_cost", tenant, "namespace"))


@pytest.mark.parametrize("which", ["a", "b"])
def test_cluster_and_tenant_labels_are_single_valued_and_match_the_chart(pipeline: Stack, which: str) -> None:
    tenant: Tenant = getattr(pipeline, which)
    all_series = f'{{__name__=~"{METRIC_PREFIX}.+",tenant_id="{tenant.spec.tenant_id}"}}'
    clusters = {r["metric"].get("cluster") for r in pipeline.thanos.query(f"count by (cluster) ({all_series})")}
    assert clusters == {tenant.spec.cluster_name}
    by_cluster = f'{{__name__=~"{METRIC_PREFIX}.+",cluster="{tenant.spec.cluster_name}"}}'
    tenants = {r["metric"].get("tenant_id") for r in pipeline.thanos.query(f"count by (tenant_id) ({by_cluster})")}
    assert tenants == {tenant.spec.tenant_id}
    # The exporter's own tenant_id label, the agent's external label and the THANOS-TENANT header agree:
    assert tenant.exporter_env["TENANT_ID"] == tenant.spec.tenant_id
    assert tenant.agent_config["global"]["external_labels"]["tenant_id"] == tenant.spec.tenant_id


@pytest.mark.parametrize("which", ["a", "b"])
def test_namespace_costs_plus_idle_equal_the_cluster_total(pipeline: Stack, which: str) -> None:
    """The identity of docs/metrics.md, evaluated as PromQL in Thanos the way the platform's backend would."""
    tenant: Tenant = getattr(pipeline, which)
    sel = _sel(tenant)
    identity = (
        f"sum by (cluster) ({METRIC_PREFIX}namespace_total_cost{sel})"
        f" + on (cluster) {METRIC_PREFIX}cluster_idle_cost{sel}"
    )
    lhs = pipeline.thanos.value(identity)
    assert lhs is not None, f"{identity} is empty in Thanos (is cluster_idle_cost exported in every mode?)"
    total = _one(pipeline.thanos, "cluster_total_cost", tenant)
    assert lhs == pytest.approx(total, rel=REL)
    idle = _one(pipeline.thanos, "cluster_idle_cost", tenant)
    if tenant.exporter_env.get("SHARE_IDLE") == "none":
        assert idle > 0.05 * total, "with shareIdle none the simulator's idle must show as cluster_idle_cost"
    else:
        assert idle == pytest.approx(0.0, abs=1e-9), "with idle shared, the simulator leaves no idle row"


@pytest.mark.parametrize("which", ["a", "b"])
def test_values_match_the_simulators_own_answer(pipeline: Stack, which: str) -> None:
    tenant: Tenant = getattr(pipeline, which)
    thanos = pipeline.thanos
    ns_rows, hours = _sim_rows(tenant, "namespace")
    cl_rows, _ = _sim_rows(tenant, "cluster")
    rate = 1.0 / hours if tenant.exporter_env.get("METRIC_MODE", "rate") == "rate" else 1.0

    def close(got: float, want: float, what: str) -> None:
        assert got == pytest.approx(want, rel=REL, abs=1e-9), f"{what}: Thanos {got} vs simulator {want}"

    for metric, field in (
        ("total", "totalCost"),
        ("cpu", "cpuCost"),
        ("ram", "ramCost"),
        ("pv", "pvCost"),
        ("network", "networkCost"),
        ("lb", "loadBalancerCost"),
    ):
        got = _by(thanos, f"namespace_{metric}_cost", tenant, "namespace")
        for ns in NAMESPACES:
            close(got[ns], _cost(ns_rows[ns], field) * rate, f"namespace_{metric}_cost{{namespace={ns}}}")
    for metric, field in (("cpu", "cpuEfficiency"), ("ram", "ramEfficiency"), ("total", "totalEfficiency")):
        got = _by(thanos, f"namespace_{metric}_efficiency", tenant, "namespace")
        for ns in NAMESPACES:
            if ns_rows[ns][field] is not None:  # a null is omitted by the exporter, never 0
                close(got[ns], float(ns_rows[ns][field]), f"namespace_{metric}_efficiency{{namespace={ns}}}")

    # The cluster total against the API's own aggregate=cluster total. Each row is rounded to 5 decimals, so the
    # two answers may differ by half a unit in the last place per row (far below 0.1 % of ~$0.27).
    rounding = 0.5e-5 * (len(ns_rows) + len(cl_rows)) * rate
    want_total = sum(_cost(r, "totalCost") for r in cl_rows.values()) * rate
    got_total = _one(thanos, "cluster_total_cost", tenant)
    assert got_total == pytest.approx(want_total, rel=REL, abs=rounding), "cluster_total_cost vs aggregate=cluster"
    # Every cluster cost series against the sum over the rows of the exporter's own query, `__idle__` included
    # (idle CPU and RAM are the cluster's too), and idle against the `__idle__` row.
    fields = {
        "total": "totalCost",
        "cpu": "cpuCost",
        "ram": "ramCost",
        "pv": "pvCost",
        "network": "networkCost",
        "lb": "loadBalancerCost",
        "gpu": "gpuCost",
        "shared": "sharedCost",
    }
    for metric, field in fields.items():
        want = sum(_cost(r, field) for r in ns_rows.values()) * rate
        close(_one(thanos, f"cluster_{metric}_cost", tenant), want, f"cluster_{metric}_cost")
    idle_row = ns_rows.get("__idle__")
    close(
        _one(thanos, "cluster_idle_cost", tenant),
        (_cost(idle_row, "totalCost") if idle_row else 0.0) * rate,
        "cluster_idle_cost",
    )
    # Efficiencies: the non-idle row of aggregate=cluster (the exporter combines the namespace rows the way
    # Kubecost aggregates them; their averages are rounded, hence the small absolute slack).
    (row,) = (r for k, r in cl_rows.items() if k != "__idle__")
    for metric, field in (("cpu", "cpuEfficiency"), ("ram", "ramEfficiency"), ("total", "totalEfficiency")):
        efficiency = _one(thanos, f"cluster_{metric}_efficiency", tenant)
        assert efficiency == pytest.approx(float(row[field]), rel=REL, abs=1e-4), f"cluster_{metric}_efficiency"
    assert _one(thanos, "exported_namespaces", tenant) == len(NAMESPACES)


@pytest.mark.parametrize("which", ["a", "b"])
def test_only_cloudtuner_kubecost_series_leave_the_cluster(pipeline: Stack, which: str) -> None:
    tenant: Tenant = getattr(pipeline, which)
    names = pipeline.thanos.names(_sel(tenant))
    assert names, "nothing from this sender in Thanos"
    assert [n for n in names if not n.startswith(METRIC_PREFIX)] == []
    # What the agent scraped but must not send (its scrape-health series) really was there to be dropped:
    status = http_json(f"{tenant.agent_url}/api/v1/status/config")
    assert "write_relabel_configs" in status["data"]["yaml"]


def test_second_tenant_stays_separate(pipeline: Stack) -> None:
    thanos, a, b = pipeline.thanos, pipeline.a, pipeline.b
    totals = {
        r["metric"]["tenant_id"]: (r["metric"]["cluster"], float(r["value"][1]))
        for r in thanos.query(f"{METRIC_PREFIX}cluster_total_cost")
    }
    assert set(totals) == {a.spec.tenant_id, b.spec.tenant_id}, totals
    assert totals[a.spec.tenant_id][0] == a.spec.cluster_name
    assert totals[b.spec.tenant_id][0] == b.spec.cluster_name
    # B's simulator runs at half the cost of A's: the totals must not have been mixed or summed.
    assert totals[b.spec.tenant_id][1] == pytest.approx(0.5 * totals[a.spec.tenant_id][1], rel=REL)
    # Thanos keeps one TSDB per tenant (THANOS-TENANT header); nothing fell back to the default tenant.
    assert thanos.query(f'{{__name__=~"{METRIC_PREFIX}.+",tenant_id="default-tenant"}}') == []
    for r in thanos.query(f'{{__name__=~"{METRIC_PREFIX}.+"}}'):
        assert r["metric"][RECEIVE_LABEL[0]] == RECEIVE_LABEL[1]
        assert (r["metric"]["tenant_id"], r["metric"]["cluster"]) in {
            (a.spec.tenant_id, a.spec.cluster_name),
            (b.spec.tenant_id, b.spec.cluster_name),
        }


def test_a_failing_api_shows_in_the_health_series_and_recovers(pipeline: Stack) -> None:
    thanos, b = pipeline.thanos, pipeline.b
    errors_before = sum(_by(thanos, "scrape_errors_total", b, "reason").values())
    timeout = 3 * (b.refresh_seconds + b.scrape_seconds + b.send_deadline_seconds) + 10
    b.sim_fault("http500")
    try:
        wait_until(lambda: _one(thanos, "scrape_success", b) == 0, timeout, "scrape_success 0 in Thanos")
        assert sum(_by(thanos, "scrape_errors_total", b, "reason").values()) > errors_before
        # Cost series survive a failed refresh (until the staleness limit), so dashboards don't blank out.
        assert _one(thanos, "cluster_total_cost", b) > 0
    finally:
        b.sim_fault("none")
    wait_until(lambda: _one(thanos, "scrape_success", b) == 1, timeout, "scrape_success back to 1 in Thanos")


_LINE = re.compile(rf"^{METRIC_PREFIX}cluster_total_cost\{{[^}}]*\}} (\S+)$", re.M)


def _exporter_total(tenant: Tenant) -> float | None:
    m = _LINE.search(tenant.exporter_metrics())
    return float(m.group(1)) if m else None


def _near(read: Callable[[], float | None], want: float) -> bool:
    got = read()
    return got is not None and abs(got - want) <= REL * want


def test_pipeline_latency(pipeline: Stack, record_property: Any) -> None:
    """Simulator change -> visible in Thanos, reported beyond the configured intervals (printed in the summary)."""
    thanos, a = pipeline.thanos, pipeline.a
    refresh, scrape, deadline = a.refresh_seconds, a.scrape_seconds, a.send_deadline_seconds
    configured = refresh + scrape + deadline
    base = _one(thanos, "cluster_total_cost", a)
    samples = []
    for scale in (2.0, 1.0, 1.5, 1.0):
        want = base * scale
        t0 = time.monotonic()
        a.sim_config(scale=scale)
        wait_until(
            functools.partial(_near, lambda: _exporter_total(a), want),
            configured + 30,
            f"exporter to show scale {scale}",
            interval=0.05,
        )
        t1 = time.monotonic()
        wait_until(
            functools.partial(_near, lambda: thanos.value(f"{METRIC_PREFIX}cluster_total_cost{_sel(a)}"), want),
            configured + 30,
            f"Thanos to show scale {scale}",
            interval=0.1,
        )
        t2 = time.monotonic()
        samples.append(
            {
                "scale": scale,
                "to_exporter_s": round(t1 - t0, 2),
                "to_thanos_s": round(t2 - t1, 2),
                "total_s": round(t2 - t0, 2),
            }
        )
    totals = [s["total_s"] for s in samples]
    report = {
        "configured_s": {"refresh_interval": refresh, "scrape_interval": scrape, "batch_send_deadline": deadline},
        "samples": samples,
        "total_s": {"median": statistics.median(totals), "max": max(totals)},
        "beyond_refresh_plus_scrape_s": round(max(totals) - refresh - scrape, 2),
        "beyond_all_configured_s": round(max(totals) - configured, 2),
    }
    text = json.dumps(report)
    record_property("pipeline_latency", text)
    Path(pipeline.group.workdir / "latency.json").write_text(text + "\n")
    print(f"pipeline latency: {text}")
    # Worst case is one refresh (+10 % jitter) + one scrape + one send deadline; allow processing time on top
    # (the machine is shared with builds, so be generous: a broken pipeline misses this by minutes, not seconds).
    assert max(totals) <= 1.1 * configured + 10, report
